"""tools.containers.health: which containers have a health check, and when each is due."""

from __future__ import annotations

from tools.containers.health import START_INTERVAL_S, next_check_s, parse_ps


def test_only_containers_with_a_health_check_are_checked() -> None:
    stdout = (
        "a1\tUp 3 seconds ago (starting)\n"
        "b2\tUp 2 minutes ago (healthy)\n"
        "c3\tUp 1 minute ago (unhealthy)\n"
        "d4\tUp 5 seconds ago\n"
        "e5\tUp 4 seconds ago (healthy-looking name)\n"
    )
    assert parse_ps(stdout) == {"a1": "starting", "b2": "healthy", "c3": "unhealthy"}


def test_a_started_container_is_checked_at_its_own_interval() -> None:
    assert next_check_s(10.0, "healthy") == 10.0
    assert next_check_s(10.0, "unhealthy") == 10.0


def test_a_starting_container_is_checked_sooner_but_never_more_often_than_asked() -> None:
    assert next_check_s(10.0, "starting") == START_INTERVAL_S
    assert next_check_s(1.0, "starting") == 1.0
