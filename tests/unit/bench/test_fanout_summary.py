"""The fan-out summary's split of the server's CPU per delivered update."""

from __future__ import annotations

import math

from bench.fanout.summary import cpu_per_delivery_us


def test_cpu_per_delivery_splits_user_space_from_the_kernel() -> None:
    # 0.9 cores, 0.4 of them in the kernel, for 40,000 updates/s: 12.5 µs + 10 µs each.
    split = cpu_per_delivery_us({"cores": 0.9, "kernel_cores": 0.4}, 40_000)
    assert split == {"server_user_us_per_delivery": 12.5, "server_kernel_us_per_delivery": 10.0}


def test_nothing_delivered_has_no_cost_per_delivery() -> None:
    split = cpu_per_delivery_us({"cores": 0.9, "kernel_cores": 0.4}, 0)
    assert all(math.isnan(value) for value in split.values())
