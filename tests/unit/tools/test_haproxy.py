"""The load balancer's configuration: the project's file, with one server line per instance."""

from __future__ import annotations

import pytest

from tools.devstack.haproxy import CONFIG, render


def test_each_instance_becomes_a_checked_server_of_the_last_section() -> None:
    text = render(["127.0.0.1:8000", "127.0.0.1:8001"])
    assert text.startswith(CONFIG.read_text().rstrip("\n"))
    sections = [line for line in text.splitlines() if line and not line[0].isspace() and line[0] != "#"]
    assert sections[-1] == "backend dashboard_api"
    assert text.splitlines()[-2:] == [
        "    server dashboard_api-1 127.0.0.1:8000 check",
        "    server dashboard_api-2 127.0.0.1:8001 check",
    ]


def test_the_backend_checks_readiness_and_balances_by_open_connections() -> None:
    text = CONFIG.read_text()
    assert "option httpchk GET /readyz" in text
    assert "balance leastconn" in text
    assert '"${TAPEWIRE_LB_BIND}"' in text


def test_no_instance_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        render([])
