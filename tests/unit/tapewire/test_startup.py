"""The one start-up shape: bad settings are explained by variable and exit 2; good ones reach
`serve` with a stop event and a registry that has the process metrics."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from services.processor.settings import ProcessorSettings
from tapewire.errors import Wedged
from tapewire.startup import EXIT_CONFIG, EXIT_FAILURE, main


def test_a_bad_variable_is_named_and_nothing_is_served(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROCESSOR_COMMIT_INTERVAL_MS", "0")
    served: list[ProcessorSettings] = []

    code = main("processor", ProcessorSettings, lambda s, _stop, _registry: served.append(s))

    assert (code, served) == (EXIT_CONFIG, [])
    err = capsys.readouterr().err
    assert err.startswith("processor: invalid settings\n")
    assert "PROCESSOR_COMMIT_INTERVAL_MS: Input should be greater than or equal to 1" in err


def test_a_bad_shared_piece_is_named_with_its_own_prefix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_LINGER_MS", "-1")

    assert main("processor", ProcessorSettings, lambda *_: None) == EXIT_CONFIG

    assert "  KAFKA_LINGER_MS: Input should be greater than or equal to 0" in capsys.readouterr().err


def test_good_settings_reach_serve_and_its_exit_code_is_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSOR_GROUP_ID", "g-test")
    seen: dict[str, object] = {}

    def serve(settings: ProcessorSettings, stop: threading.Event, registry: CollectorRegistry) -> int:
        seen.update(group=settings.group_id, stopped=stop.is_set())
        seen["cpu"] = registry.get_sample_value("process_cpu_seconds_total")
        return 3

    assert main("processor", ProcessorSettings, serve) == 3
    assert seen["group"] == "g-test" and seen["stopped"] is False
    assert seen["cpu"] is not None  # the process collector is registered


def test_a_wedged_service_ends_the_process_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No clean-up after a call that will not return: os._exit, not a return through `finally`."""
    monkeypatch.setenv("PROCESSOR_GROUP_ID", "g-test")
    exits: list[int] = []

    class Exited(BaseException):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise Exited

    def wedged(*_: object) -> None:
        raise Wedged("a call has not returned")

    monkeypatch.setattr("tapewire.startup.os._exit", fake_exit)
    with pytest.raises(Exited):
        main("processor", ProcessorSettings, wedged)
    assert exits == [EXIT_FAILURE]
