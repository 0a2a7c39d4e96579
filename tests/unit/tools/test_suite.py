"""tools.suite's supervision: the restart policy against a fake clock, and the supervisor over
fake processes (no process is started, nothing sleeps)."""

from __future__ import annotations

import itertools
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.suite import RestartDelays, RestartPolicy, Suite, Supervisor, describe_exit

BACKOFF = RestartDelays(initial_s=1.0, max_s=30.0, factor=2.0, reset_after_s=60.0)


def delays(policy: RestartPolicy, instance: str, count: int, up_s: float = 0.5) -> list[float]:
    """Exit `count` times in a row, each after `up_s` of uptime; the delays given."""
    now, given = 0.0, []
    for _ in range(count):
        now += up_s
        given.append(policy.exited(instance, now))
        now += given[-1]
        policy.restarted(instance, now)
    return given


def test_quick_failures_double_the_delay_up_to_the_cap() -> None:
    assert delays(RestartPolicy(BACKOFF), "processor", 7) == [1, 2, 4, 8, 16, 30, 30]


def test_the_delay_stays_at_the_cap_however_many_failures() -> None:
    # factor ** failures would overflow a float after about a thousand doublings.
    assert delays(RestartPolicy(BACKOFF), "processor", 3000)[-1] == 30


def test_staying_up_long_enough_resets_the_delay() -> None:
    policy = RestartPolicy(BACKOFF)
    assert delays(policy, "ingester", 4) == [1, 2, 4, 8]
    policy.started("ingester", 100.0)
    assert policy.exited("ingester", 160.0) == 1  # up exactly reset_after_s
    policy.restarted("ingester", 161.0)
    assert policy.exited("ingester", 162.0) == 2


def test_not_long_enough_keeps_doubling() -> None:
    policy = RestartPolicy(BACKOFF)
    assert delays(policy, "ingester", 2, up_s=59.9) == [1, 2]


def test_instances_back_off_independently() -> None:
    policy = RestartPolicy(BACKOFF)
    delays(policy, "processor", 3)
    assert policy.exited("processor-2", 10.0) == 1
    assert policy.exited("processor", 10.0) == 8


def test_an_instance_never_seen_starting_gets_the_first_delay() -> None:
    assert RestartPolicy(BACKOFF).exited("dashboard", 5.0) == 1


def test_only_restarts_are_counted_per_instance() -> None:
    policy = RestartPolicy(BACKOFF)
    policy.started("processor", 0.0)
    policy.exited("processor", 1.0)
    assert policy.restarts("processor") == 0 and policy.counts() == {}
    delays(policy, "cache_updater", 3)
    policy.restarted("processor", 2.0)
    assert policy.counts() == {"processor": 1, "cache_updater": 3}


def test_default_backoff_is_one_to_thirty_seconds_reset_after_a_minute() -> None:
    assert RestartPolicy().delays == RestartDelays(initial_s=1.0, max_s=30.0, factor=2.0, reset_after_s=60.0)


@pytest.mark.parametrize(
    "settings",
    [{"initial_s": -1.0}, {"initial_s": 5.0, "max_s": 1.0}, {"factor": 0.5}, {"reset_after_s": -1.0}],
)
def test_backoff_refuses_settings_that_make_no_sense(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartDelays(**settings)


def test_exit_codes_are_described_with_the_signal_that_ended_the_process() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


class FakeProcess:
    """What the supervisor uses of a Popen: its pid and poll()."""

    pids = itertools.count(1000)

    def __init__(self) -> None:
        self.pid = next(self.pids)
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


class FakeSuite(Suite):
    """A Suite whose restarts make fake processes, or fail as told."""

    def __init__(self, tmp_path: Path, instances: list[str]) -> None:
        super().__init__(env={}, log_dir=tmp_path, services=())
        self.processes.update({name: FakeProcess() for name in instances})  # type: ignore[misc]
        self.fail_restarts = 0

    def restart(self, instance: str) -> Any:
        if self.stopping:
            return None
        if self.fail_restarts:
            self.fail_restarts -= 1
            raise FileNotFoundError(f"no such file: {instance}")
        process = FakeProcess()
        self.processes[instance] = process  # type: ignore[assignment]
        return process


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def suite(tmp_path: Path) -> FakeSuite:
    return FakeSuite(tmp_path, ["processor", "dashboard_api"])


@pytest.fixture
def reports() -> list[str]:
    return []


@pytest.fixture
def policy() -> RestartPolicy:
    return RestartPolicy(BACKOFF)


@pytest.fixture
def supervisor(suite: FakeSuite, policy: RestartPolicy, clock: Clock, reports: list[str]) -> Supervisor:
    watching = Supervisor(suite, policy, clock=clock, report=reports.append)
    watching.tick()  # the first look: both running
    return watching


def exit_(suite: FakeSuite, instance: str, code: int) -> FakeProcess:
    process: FakeProcess = suite.processes[instance]  # type: ignore[assignment]
    process.code = code
    return process


def test_an_exited_process_is_restarted_after_its_delay_and_reported(
    supervisor: Supervisor, policy: RestartPolicy, suite: FakeSuite, clock: Clock, reports: list[str]
) -> None:
    dead = exit_(suite, "processor", -signal.SIGKILL)
    running = suite.processes["dashboard_api"]
    clock.now = 10.0
    supervisor.tick()
    assert reports == [f"suite: processor (pid {dead.pid}) ended, killed by SIGKILL; restart #1 in 1.0 s"]
    clock.now = 10.9
    supervisor.tick()
    assert suite.processes["processor"] is dead
    clock.now = 11.0
    supervisor.tick()
    new = suite.processes["processor"]
    assert new is not dead and reports[-1] == f"suite: processor restarted (pid {new.pid})"
    assert suite.processes["dashboard_api"] is running
    assert policy.counts() == {"processor": 1}


def test_failing_again_soon_waits_longer(
    supervisor: Supervisor, policy: RestartPolicy, suite: FakeSuite, clock: Clock, reports: list[str]
) -> None:
    for restart, now, delay in ((1, 1.0, 1.0), (2, 3.0, 2.0), (3, 6.0, 4.0)):
        exit_(suite, "processor", 1)
        clock.now = now
        supervisor.tick()
        assert reports[-1].endswith(f"exit code 1; restart #{restart} in {delay:.1f} s")
        clock.now = now + delay
        supervisor.tick()
    assert policy.restarts("processor") == 3


def test_a_process_replaced_by_someone_else_is_a_start_not_a_restart(
    supervisor: Supervisor, policy: RestartPolicy, suite: FakeSuite, clock: Clock, reports: list[str]
) -> None:
    exit_(suite, "dashboard_api", -signal.SIGKILL)
    suite.processes["dashboard_api"] = FakeProcess()  # type: ignore[assignment]
    clock.now = 5.0
    supervisor.tick()
    clock.now = 100.0
    supervisor.tick()
    assert reports == [] and policy.counts() == {}


def test_an_instance_started_later_is_supervised_too(
    supervisor: Supervisor, policy: RestartPolicy, suite: FakeSuite, clock: Clock, reports: list[str]
) -> None:
    suite.processes["processor-2"] = FakeProcess()  # type: ignore[assignment]
    supervisor.tick()
    exit_(suite, "processor-2", 0)
    clock.now = 1.0
    supervisor.tick()
    clock.now = 2.0
    supervisor.tick()
    assert policy.counts() == {"processor-2": 1}


def test_nothing_is_restarted_once_the_suite_is_stopping(
    supervisor: Supervisor, policy: RestartPolicy, suite: FakeSuite, clock: Clock
) -> None:
    dead = exit_(suite, "processor", -signal.SIGTERM)
    supervisor.tick()
    suite.stopping = True
    clock.now = 60.0
    supervisor.tick()
    assert suite.processes["processor"] is dead and policy.counts() == {}


def test_a_restart_that_cannot_start_is_tried_again_later_and_later(
    supervisor: Supervisor, policy: RestartPolicy, suite: FakeSuite, clock: Clock, reports: list[str]
) -> None:
    exit_(suite, "processor", 2)
    suite.fail_restarts = 3
    clock.now = 1000.0  # up long enough: the first delay is the shortest again
    supervisor.tick()
    for now, delay in ((1001.0, 2.0), (1003.0, 4.0), (1007.0, 8.0)):
        clock.now = now
        supervisor.tick()
        assert (
            reports[-1]
            == f"suite: cannot restart processor: no such file: processor; trying again in {delay} s"
        )
    clock.now = 1014.9
    supervisor.tick()
    assert policy.counts() == {}
    clock.now = 1015.0
    supervisor.tick()
    assert policy.counts() == {"processor": 1}


def test_a_restart_runs_the_command_and_environment_of_the_first_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = Suite(env={"TW_FROM_SUITE": "first"}, log_dir=tmp_path, services=())
    monkeypatch.setenv("TW_FROM_OS", "first")
    show = "import os; print(os.environ['TW_FROM_SUITE'], os.environ['TW_FROM_OS'], os.environ['TW_EXTRA'])"
    first = suite._spawn("echo", [sys.executable, "-c", show], tmp_path, {"TW_EXTRA": "first"})
    assert first.wait(30) == 0
    suite.env = {"TW_FROM_SUITE": "changed"}
    monkeypatch.setenv("TW_FROM_OS", "changed")
    again = suite.restart("echo")
    assert again is suite.processes["echo"] and again.pid != first.pid
    assert again.wait(30) == 0
    assert (tmp_path / "echo.log").read_text().splitlines() == ["first first first"] * 2
    suite.stop()
    assert suite.restart("echo") is None and suite.processes["echo"] is again
