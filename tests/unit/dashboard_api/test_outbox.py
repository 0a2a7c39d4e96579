"""The send queue on its own: the slow-client ladder and the throttles, with a clock passed in."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from services.dashboard_api.live.outbox import RESYNC, ConflatedNotice, Ladder, Outbox, ResyncRequest, Verdict


@dataclass(frozen=True, slots=True)
class D:
    instrument: str
    version: int


Item = D | str | ConflatedNotice | ResyncRequest


def make(capacity: int = 3, conflation_s: float = 5.0, resync_s: float = 10.0, allowance: int = 64) -> Outbox:
    box: Outbox[D, str] = Outbox(capacity, conflation_s, resync_s, control_allowance=allowance)
    return box


def drain(box: Outbox, now: float = 0.0) -> list[Item]:
    items: list[Item] = []
    while (item := box.pop(now)) is not None:
        items.append(item)
    return items


def offer(box: Outbox, instrument: str, versions: range, now: float = 0.0) -> list[Verdict]:
    return [box.offer_delta(D(instrument, version), now) for version in versions]


def test_normal_queue_keeps_deltas_and_control_messages_in_order() -> None:
    box = make(capacity=4)
    assert box.offer_delta(D("A", 1), 0.0) is Verdict.QUEUED
    assert box.offer_control("reply")
    assert box.offer_delta(D("B", 1), 0.0) is Verdict.QUEUED
    assert box.offer_delta(D("A", 2), 0.0) is Verdict.QUEUED
    assert len(box) == 4
    assert drain(box) == [D("A", 1), "reply", D("B", 1), D("A", 2)]
    assert (box.ladder, len(box), box.has_steps) == (Ladder.NORMAL, 0, False)
    assert box.pop(1.0) is None


def test_control_messages_do_not_count_against_the_capacity() -> None:
    box = make(capacity=2)
    for n in range(10):
        assert box.offer_control(f"c{n}")
    assert offer(box, "A", range(1, 3)) == [Verdict.QUEUED] * 2
    assert box.ladder is Ladder.NORMAL
    assert len(drain(box)) == 12


def test_overflow_conflates_to_the_latest_state_per_instrument() -> None:
    box = make(capacity=3)
    offer(box, "A", range(1, 4))
    assert box.ladder is Ladder.NORMAL
    box.offer_delta(D("B", 1), 0.0)  # the queue is full: conflate from here on
    assert box.ladder is Ladder.CONFLATING
    assert box.take_steps() == [Ladder.CONFLATING]
    offer(box, "A", range(4, 6))  # A4 waits, then A5 replaces it (1 dropped)
    offer(box, "B", range(2, 4))  # B2 replaces B1, B3 replaces B2 (2 dropped)
    assert len(box) == 3 + 2  # the queue plus one pending state per instrument
    # The queue is sent first, as it was; the latest states only once it has drained.
    assert [box.pop(0.0), box.pop(0.0)] == [D("A", 1), D("A", 2)]
    box.offer_delta(D("A", 6), 0.0)  # still conflating while draining: A6 replaces A5
    assert box.pop(0.0) == D("A", 3)
    notice = box.pop(0.0)
    assert isinstance(notice, ConflatedNotice)
    assert notice.dropped == 4
    assert sorted(notice.instruments) == ["A", "B"]
    rest = drain(box)
    assert sorted(rest, key=lambda d: d.instrument) == [D("A", 6), D("B", 3)]  # type: ignore[union-attr]
    # Drained: back to normal, nothing counted any more.
    assert box.ladder is Ladder.NORMAL
    assert box.offer_delta(D("A", 7), 0.0) is Verdict.QUEUED
    assert drain(box) == [D("A", 7)]
    assert not box.has_steps


def test_conflating_without_drops_sends_no_notice() -> None:
    box = make(capacity=1)
    box.offer_delta(D("A", 1), 0.0)
    box.offer_delta(D("B", 1), 0.0)  # overflow, but nothing is replaced
    assert box.ladder is Ladder.CONFLATING
    assert drain(box) == [D("A", 1), D("B", 1)]
    assert box.ladder is Ladder.NORMAL


def test_a_second_notice_counts_only_what_was_dropped_after_the_first() -> None:
    box = make(capacity=1)
    offer(box, "A", range(1, 5))  # A1 queued; A2 pending; A3, A4 each replace it: 2 dropped
    assert box.pop(0.0) == D("A", 1)
    assert box.pop(0.0) == ConflatedNotice(2, ("A",))
    offer(box, "A", range(5, 8))  # A4 was still pending: A5, A6 and A7 each replace one
    assert box.pop(0.0) == ConflatedNotice(3, ("A",))
    assert drain(box) == [D("A", 7)]


def test_conflating_too_long_resyncs_dropping_queued_updates_but_not_replies() -> None:
    box = make(capacity=2, conflation_s=5.0, resync_s=10.0)
    box.offer_delta(D("A", 1), 0.0)
    assert box.offer_control("r1")
    box.offer_delta(D("A", 2), 0.0)
    box.offer_delta(D("A", 3), 1.0)  # conflating since t=1
    assert box.offer_control("r2")
    box.offer_delta(D("A", 4), 6.0)  # 5 s: not more than the timeout yet
    assert box.ladder is Ladder.CONFLATING
    box.offer_delta(D("A", 5), 6.5)  # 5.5 s: resync
    assert box.ladder is Ladder.RESYNCING
    assert box.take_steps() == [Ladder.CONFLATING, Ladder.RESYNCING]
    assert len(box) == 3 + 1  # RESYNC, r1, r2 and the one pending A
    box.offer_delta(D("A", 6), 7.0)
    items = drain(box, 7.0)
    # The resync first (the replies it overtakes do not depend on the dropped updates), then
    # the replies, then the latest update: the snapshot covers anything it replaced, so no notice.
    assert items == [RESYNC, "r1", "r2", D("A", 6)]
    assert isinstance(items[0], ResyncRequest)
    assert box.ladder is Ladder.NORMAL
    assert not box.has_steps


def test_the_resync_request_starts_the_conflation_clock_over() -> None:
    box = make(capacity=1, conflation_s=5.0, resync_s=10.0)
    offer(box, "A", range(1, 3), now=0.0)
    box.offer_delta(D("A", 3), 6.0)  # resync at t=6
    box.take_steps()
    assert box.pop(8.0) is RESYNC  # taken at t=8: conflating again from there
    assert box.ladder is Ladder.CONFLATING
    box.offer_delta(D("A", 4), 12.0)  # 4 s since the resync was taken: no new step
    assert box.ladder is Ladder.CONFLATING
    assert box.offer_delta(D("A", 5), 17.0) is Verdict.QUEUED  # 9 s > 5 s: resync again, not close
    assert box.take_steps() == [Ladder.RESYNCING]


def test_a_resync_not_taken_in_time_closes() -> None:
    box = make(capacity=1, conflation_s=1.0, resync_s=10.0)
    offer(box, "A", range(1, 3), now=0.0)  # conflating at 0
    box.offer_delta(D("A", 3), 2.0)  # resyncing at 2
    assert box.offer_delta(D("A", 4), 12.0) is Verdict.QUEUED  # exactly 10 s: not yet
    assert box.offer_delta(D("A", 5), 12.5) is Verdict.CLOSE
    assert box.take_steps() == [Ladder.CONFLATING, Ladder.RESYNCING, None]
    assert not box.has_steps


def test_an_explicit_resync_skips_the_ladder() -> None:
    box = make(capacity=5)
    box.offer_delta(D("A", 1), 0.0)
    box.offer_control("r")
    box.offer_delta(D("B", 1), 0.0)
    box.resync(0.0)
    box.resync(0.0)  # twice: still one request
    assert box.take_steps() == [Ladder.RESYNCING, Ladder.RESYNCING]
    assert drain(box) == [RESYNC, "r"]


def test_the_control_allowance() -> None:
    box = make(capacity=1, allowance=3)
    assert [box.offer_control(f"c{n}") for n in range(4)] == [True, True, True, False]
    assert box.offer_delta(D("A", 1), 0.0) is Verdict.QUEUED  # updates have their own room
    assert box.pop(0.0) == "c0"
    assert box.offer_control("c4")
    assert not box.offer_control("c5")


def test_throttle_sends_at_most_one_per_interval_and_the_newest_wins() -> None:
    box = make(capacity=100)
    box.throttle(("A",), 2.0)  # every 0.5 s at most
    box.offer_delta(D("A", 1), 0.0)
    assert box.pop(0.0) == D("A", 1)  # the first goes at once
    box.offer_delta(D("A", 2), 0.1)
    box.offer_delta(D("B", 1), 0.1)  # not throttled
    box.offer_delta(D("A", 3), 0.2)
    assert box.pop(0.2) == D("B", 1)  # A2 is held, then A3 replaces it
    assert box.pop(0.2) is None
    assert len(box) == 1
    assert box.next_due() == 0.5
    assert box.pop(0.49) is None
    assert box.pop(0.5) == D("A", 3)
    assert box.next_due() is None
    box.offer_delta(D("A", 4), 1.2)  # its slot (1.0) has passed: sent at once
    assert box.pop(1.2) == D("A", 4)
    box.offer_delta(D("A", 5), 1.3)
    assert box.pop(1.3) is None
    assert box.next_due() == 1.7


def test_throttle_over_time() -> None:
    box = make(capacity=1000)
    box.throttle(("A",), 4.0)  # interval 0.25 s
    sent: list[tuple[float, int]] = []
    for step in range(200):  # an update every 10 ms for 2 s
        now = step * 0.01
        box.offer_delta(D("A", step + 1), now)
        while (item := box.pop(now)) is not None:
            assert isinstance(item, D)
            sent.append((now, item.version))
    due = box.next_due()
    assert due is not None
    sent += [(due, item.version) for item in drain(box, due) if isinstance(item, D)]
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(sent)]
    assert all(gap >= 0.25 - 1e-9 for gap in gaps), gaps
    assert 8 <= len(sent) <= 10
    assert sent[-1][1] == 200  # the last state always arrives
    versions = [version for _, version in sent]
    assert versions == sorted(versions)


def test_lifting_a_throttle_releases_the_held_update() -> None:
    box = make()
    box.throttle(("A",), 1.0)
    box.offer_delta(D("A", 1), 0.0)
    assert box.pop(0.0) == D("A", 1)
    box.offer_delta(D("A", 2), 0.1)
    assert box.pop(0.1) is None
    box.throttle(("A",), 0.0)
    assert box.pop(0.1) == D("A", 2)
    assert box.next_due() is None
    box.offer_delta(D("A", 3), 0.2)
    assert box.pop(0.2) == D("A", 3)  # no throttle any more


def test_changing_a_throttle_keeps_it() -> None:
    box = make()
    box.throttle(("A", "B"), 1.0)
    box.throttle(("A",), 10.0)  # A: every 0.1 s now; B keeps 1 s
    for name in ("A", "B"):
        box.offer_delta(D(name, 1), 0.0)
        box.offer_delta(D(name, 2), 0.0)
    assert drain(box, 0.0) == [D("A", 1), D("B", 1)]
    assert box.next_due() == 0.1
    assert drain(box, 0.1) == [D("A", 2)]
    assert box.next_due() == 1.0


def test_forget_drops_held_and_latest_updates() -> None:
    box = make(capacity=1)
    box.throttle(("A",), 1.0)
    box.offer_delta(D("A", 1), 0.0)
    assert box.pop(0.0) == D("A", 1)
    box.offer_delta(D("A", 2), 0.0)
    assert box.pop(0.0) is None  # A2 held
    box.offer_delta(D("B", 1), 0.0)  # queued
    box.offer_delta(D("B", 2), 0.0)  # overflow: pending in latest
    box.offer_delta(D("C", 1), 0.0)  # pending in latest
    assert len(box) == 4
    box.forget(("A", "B"))
    assert len(box) == 2
    assert box.next_due() is None
    # The queued B1 stays (the session filters what it no longer watches); latest B2 is gone.
    assert drain(box, 5.0) == [D("B", 1), D("C", 1)]
    box.offer_delta(D("A", 3), 5.0)
    assert box.pop(5.0) == D("A", 3)  # forgotten throttle: no longer held


def test_memory_stays_bounded_when_the_client_never_reads() -> None:
    capacity, instruments = 100, 10
    box = make(capacity=capacity, conflation_s=1_000_000.0)
    for n in range(100_000):
        assert box.offer_delta(D(f"I{n % instruments}", n + 1), 0.0) is Verdict.QUEUED
        assert len(box) <= capacity + instruments
    assert len(box) == capacity + instruments
    assert box.take_steps() == [Ladder.CONFLATING]


def test_memory_stays_bounded_all_the_way_down_the_ladder() -> None:
    capacity, instruments = 100, 10
    box = make(capacity=capacity, conflation_s=5.0, resync_s=10.0)
    verdicts = []
    for n in range(100_000):
        verdicts.append(box.offer_delta(D(f"I{n % instruments}", n + 1), n * 0.001))
        assert len(box) <= capacity + instruments
    assert len(box) <= instruments + 1  # RESYNC and the latest of each instrument
    first_close = verdicts.index(Verdict.CLOSE)
    assert set(verdicts[first_close:]) == {Verdict.CLOSE}
    assert box.take_steps()[:3] == [Ladder.CONFLATING, Ladder.RESYNCING, None]


def test_pop_update_takes_updates_up_to_the_first_control_message() -> None:
    box = make(capacity=4)
    box.offer_delta(D("A", 1), 0.0)
    box.offer_delta(D("B", 1), 0.0)
    box.offer_control("reply")
    box.offer_delta(D("A", 2), 0.0)
    assert [box.pop_update(0.0), box.pop_update(0.0), box.pop_update(0.0)] == [D("A", 1), D("B", 1), None]
    assert box.has_ready()
    assert drain(box) == ["reply", D("A", 2)]  # what pop_update left is where it was
    assert not box.has_ready()


def test_pop_update_holds_throttled_updates_like_pop() -> None:
    box = make(capacity=4)
    box.throttle(("A",), 10.0)  # one per 0.1 s
    for version in (1, 2, 3):
        box.offer_delta(D("A", version), 0.0)
    assert box.pop_update(0.0) == D("A", 1)
    assert box.pop_update(0.0) is None
    assert not box.has_ready()  # only held updates: nothing for the sender before their slot
    assert box.holding and box.next_due() == 0.1
    assert box.pop_update(0.1) == D("A", 3)  # the newest of those held
    assert not box.holding


def test_pop_update_leaves_conflation_to_the_sender() -> None:
    box = make(capacity=1)
    offer(box, "A", range(1, 4))  # the second and third conflate
    assert box.pop_update(0.0) == D("A", 1)
    assert box.pop_update(0.0) is None
    assert box.has_ready()
    assert drain(box) == [ConflatedNotice(1, ("A",)), D("A", 3)]


def test_a_stalled_socket_conflates_before_the_queue_is_full() -> None:
    box = make(capacity=100)
    offer(box, "A", range(1, 4))
    box.stall(1.0)
    box.stall(1.5)  # once is enough: one step
    assert (box.ladder, box.take_steps()) == (Ladder.CONFLATING, [Ladder.CONFLATING])
    offer(box, "A", range(4, 7), now=2.0)
    offer(box, "B", range(1, 3), now=2.0)
    # What was queued before the stall goes first, in order; then the notice and the latest.
    assert drain(box, 2.0) == [
        D("A", 1),
        D("A", 2),
        D("A", 3),
        ConflatedNotice(3, ("A", "B")),
        D("A", 6),
        D("B", 2),
    ]
    assert box.ladder is Ladder.NORMAL


def test_a_stall_does_not_step_back_up_the_ladder() -> None:
    box = make(capacity=1, conflation_s=1.0)
    offer(box, "A", range(1, 3))  # full: conflating
    offer(box, "A", range(3, 4), now=2.0)  # conflating for too long: resyncing
    assert box.ladder is Ladder.RESYNCING
    box.stall(3.0)
    assert box.ladder is Ladder.RESYNCING
    assert box.take_steps() == [Ladder.CONFLATING, Ladder.RESYNCING]
