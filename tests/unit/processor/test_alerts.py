"""The alert rules, against cases checked by hand."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal as D

import pytest

from services.processor.alert_codec import book_to_proto
from services.processor.alerts import (
    Alert,
    Book,
    Cancel,
    Create,
    Direction,
    Event,
    Limits,
    Outcome,
    Status,
    apply_command,
    cancel,
    create,
    encoded_size,
    on_trade,
    rebuild,
)
from services.processor.enrich import NS_PER_SECOND, Position, State, apply
from tapewire.ticks import Trade

T0 = 1_763_649_000 * NS_PER_SECOND
ABOVE, BELOW = int(Direction.ABOVE), int(Direction.BELOW)
LIMITS = Limits(alerts=10, book_bytes=100_000)


def alert(alert_id: str, direction: int, price: str, user: str = "ann", instrument: str = "AAPL") -> Alert:
    return Alert(alert_id, user, instrument, direction, price, created_ns=T0)


def book_of(*alerts: Alert) -> Book:
    book: Book | None = None
    for offset, a in enumerate(alerts):
        outcome = create(book, a, a.instrument, Position(1, offset), LIMITS)
        assert outcome.label == "applied", outcome
        book = outcome.book
    assert book is not None
    return book


def state_after(price: str, version: int = 7) -> State:
    """An AAPL state whose last tick was a trade at `price`, at `version`."""
    state = apply(None, Trade("AAPL", "XNAS", D(price), D("1"), 1, T0, T0 + 5), Position(1, 99))
    return replace(state, version=version)


def triggered_ids(book: Book, price: str) -> tuple[Book, list[str]]:
    after, events = on_trade(book, D(price), state_after(price))
    assert all(e.status == Status.TRIGGERED for e in events)
    return after, [e.alert.alert_id for e in events]


# -- create -------------------------------------------------------------------------------------


def test_create_arms_the_alert_and_emits_active() -> None:
    a = alert("a1", ABOVE, "190.50")
    outcome = create(None, a, "AAPL", Position(1, 4), LIMITS)
    assert outcome.label == "applied"
    assert outcome.events == (Event(a, Status.ACTIVE),)
    assert outcome.book is not None
    assert list(outcome.book.alerts()) == [a]
    assert outcome.book.source == Position(1, 4)
    assert outcome.book.above[0].level == D("190.5")


@pytest.mark.parametrize(
    ("a", "key", "reason"),
    [
        (alert("r1", ABOVE, "190", instrument="MSFT"), "AAPL", "does not match the record key"),
        (alert("r2", ABOVE, "190", instrument="AA PL"), "AA PL", "must be 1-32 chars"),
        (alert("r3", 0, "190"), "AAPL", "direction must be above or below"),
        (alert("r4", 7, "190"), "AAPL", "direction must be above or below"),
        (alert("r5", BELOW, "0"), "AAPL", "must be a decimal > 0"),
        (alert("r6", BELOW, "-3"), "AAPL", "must be a decimal > 0"),
        (alert("r7", BELOW, "abc"), "AAPL", "must be a decimal > 0"),
        (alert("r8", BELOW, "NaN"), "AAPL", "must be a decimal > 0"),
        (alert("r9", BELOW, ""), "AAPL", "must be a decimal > 0"),
        (alert("r10", BELOW, "1." + "0" * 39), "AAPL", "of at most 40 chars"),
    ],
)
def test_an_invalid_create_is_rejected_with_a_reason(a: Alert, key: str, reason: str) -> None:
    book = book_of(alert("x", ABOVE, "200"))
    outcome = create(book, a, key, Position(1, 50), LIMITS)
    assert outcome.label == "rejected"
    assert outcome.book is book  # unchanged, so not rewritten to the changelog
    [event] = outcome.events
    assert (event.alert, event.status) == (a, Status.REJECTED)
    assert reason in event.reason


def test_a_create_beyond_the_limit_is_rejected() -> None:
    book = book_of(*(alert(f"a{i}", ABOVE, str(100 + i)) for i in range(LIMITS.alerts)))
    outcome = create(book, alert("one-more", BELOW, "50"), "AAPL", Position(1, 50), LIMITS)
    assert outcome.label == "rejected" and outcome.book is book
    assert outcome.events[0].reason == "AAPL already has the maximum of 10 active alerts"


def test_a_create_beyond_the_byte_budget_is_rejected() -> None:
    # Each of these adds 40 + 2 + 3 + 4 + 3 = 52 bytes at most to the encoded book.
    limits = Limits(alerts=100, book_bytes=3 * 52)
    book = None
    for n in range(3):
        book = create(book, alert(f"a{n}", ABOVE, "100"), "AAPL", Position(0, n), limits).book
    assert book is not None and book.size == 3 * 52
    outcome = create(book, alert("a3", ABOVE, "100"), "AAPL", Position(0, 3), limits)
    assert outcome.label == "rejected"
    assert outcome.events[0].reason == "AAPL has no room left for alerts (156 bytes)"


def test_the_size_bound_holds_for_the_encoded_book() -> None:
    long = Alert("x" * 200, "u" * 256, "AAPL", BELOW, "0." + "1" * 38, created_ns=-1)
    book = book_of(long, alert("a", ABOVE, "1"), alert("b", BELOW, "1.5"))
    empty = replace(book, above=(), below=())
    alerts_bytes = book_to_proto(book).ByteSize() - book_to_proto(empty).ByteSize()
    assert alerts_bytes <= book.size
    after_cancel = cancel(book, Cancel("a", "ann", "AAPL"), "AAPL", Position(0, 9)).book
    assert after_cancel is not None and after_cancel.size == book.size - encoded_size(alert("a", ABOVE, "1"))
    after_trade, _ = on_trade(book, D("1.2"), state_after("1.2"))
    assert after_trade.size == encoded_size(long)


def test_a_create_routed_away_from_the_instruments_ticks_is_rejected() -> None:
    outcome = create(None, alert("a1", ABOVE, "1"), "AAPL", Position(1, 0), LIMITS, ticks_partition=2)
    assert outcome.label == "rejected" and outcome.book is None
    assert "routed to partition 1 but the ticks of AAPL are on partition 2" in outcome.events[0].reason
    assert create(None, alert("a1", ABOVE, "1"), "AAPL", Position(2, 0), LIMITS, 2).label == "applied"


def test_a_duplicate_alert_id_is_ignored() -> None:
    book = book_of(alert("a1", ABOVE, "200"))
    # Even with other fields: the id is what names the alert.
    outcome = create(book, alert("a1", BELOW, "100"), "AAPL", Position(1, 9), LIMITS)
    assert (outcome.book, outcome.events, outcome.label) == (book, (), "ignored")


# -- cancel -------------------------------------------------------------------------------------


def test_the_creator_cancels() -> None:
    a, b = alert("a1", ABOVE, "200"), alert("b1", BELOW, "100")
    book = book_of(a, b)
    outcome = cancel(book, Cancel("a1", "ann", "AAPL"), "AAPL", Position(1, 20))
    assert outcome.label == "applied"
    assert outcome.events == (Event(a, Status.CANCELLED),)
    assert outcome.book is not None
    assert list(outcome.book.alerts()) == [b]
    assert outcome.book.source == Position(1, 20)


@pytest.mark.parametrize(
    ("request_", "key"),
    [
        (Cancel("a1", "bob", "AAPL"), "AAPL"),  # another user's alert
        (Cancel("zz", "ann", "AAPL"), "AAPL"),  # unknown id
        (Cancel("a1", "ann", "AAPL"), "MSFT"),  # the instrument does not match the key
    ],
)
def test_any_other_cancel_changes_nothing_and_emits_nothing(request_: Cancel, key: str) -> None:
    book = book_of(alert("a1", ABOVE, "200"))
    assert cancel(book, request_, key, Position(1, 20)) == Outcome(book, (), "not_found")
    assert cancel(None, request_, key, Position(1, 20)).label == "not_found"


def test_apply_command_dispatches() -> None:
    a = alert("a1", ABOVE, "200")
    book = apply_command(None, Create(a), "AAPL", Position(0, 1), LIMITS).book
    outcome = apply_command(book, Cancel("a1", "ann", "AAPL"), "AAPL", Position(0, 2), LIMITS)
    assert outcome.events == (Event(a, Status.CANCELLED),)
    assert outcome.book is not None and len(outcome.book) == 0


# -- trades -------------------------------------------------------------------------------------


def test_above_triggers_at_or_above_the_level() -> None:
    book = book_of(alert("a", ABOVE, "190.50"))
    assert triggered_ids(book, "190.49")[1] == []
    assert triggered_ids(book, "190.5")[1] == ["a"]  # at the level, written differently
    assert triggered_ids(book, "191")[1] == ["a"]


def test_below_triggers_at_or_below_the_level() -> None:
    book = book_of(alert("b", BELOW, "100"))
    assert triggered_ids(book, "100.01")[1] == []
    assert triggered_ids(book, "100.00")[1] == ["b"]
    assert triggered_ids(book, "99")[1] == ["b"]


def test_alerts_are_one_shot_and_fire_nearest_level_first() -> None:
    book = book_of(
        alert("up-105", ABOVE, "105"),
        alert("up-101", ABOVE, "101"),
        alert("up-103", ABOVE, "103"),
        alert("up-101-later", ABOVE, "101"),
        alert("down-95", BELOW, "95"),
        alert("down-99", BELOW, "99"),
    )
    book, fired = triggered_ids(book, "100")
    assert fired == []
    book, fired = triggered_ids(book, "103")
    # Ascending level for "above", and creation order within a level.
    assert fired == ["up-101", "up-101-later", "up-103"]
    book, fired = triggered_ids(book, "103")
    assert fired == []  # gone: one-shot
    book, fired = triggered_ids(book, "94")
    assert fired == ["down-99", "down-95"]  # descending level for "below"
    assert [a.alert_id for a in book.alerts()] == ["up-105"]


def test_a_triggered_event_carries_the_trade_and_the_state_it_made() -> None:
    a = alert("a", BELOW, "100")
    state = state_after("99.5", version=1311)
    book, events = on_trade(book_of(a), D("99.5"), state)
    assert events == (
        Event(
            a,
            Status.TRIGGERED,
            trigger_price=D("99.5"),
            trigger_version=1311,
            exchange_ns=T0,
            ingest_ns=T0 + 5,
        ),
    )
    assert len(book) == 0


def test_a_trade_that_crosses_nothing_returns_the_same_book() -> None:
    book = book_of(alert("a", ABOVE, "200"), alert("b", BELOW, "100"))
    after, events = on_trade(book, D("150"), state_after("150"))
    assert after is book and events == ()


def test_rebuild_sorts_stored_alerts() -> None:
    stored = [alert("b", BELOW, "90"), alert("a2", ABOVE, "120"), alert("a1", ABOVE, "110")]
    book = rebuild("AAPL", stored, Position(1, 7))
    assert [a.alert.alert_id for a in book.above] == ["a1", "a2"]
    assert [a.alert.alert_id for a in book.below] == ["b"]
    assert book.source == Position(1, 7)


def test_the_book_agrees_with_a_naive_model_over_random_commands_and_trades() -> None:
    """The sorted, indexed book against a plain list scanned in full (fixed seed)."""
    rng = random.Random(7)
    book: Book | None = None
    model: list[Alert] = []  # creation order
    for step in range(3000):
        roll = rng.random()
        if roll < 0.45:
            a = alert(
                f"x{rng.randrange(400)}", rng.choice((ABOVE, BELOW)), str(rng.randrange(90, 111)), user="u"
            )
            outcome = create(book, a, "AAPL", Position(0, step), Limits(alerts=10_000))
            if all(m.alert_id != a.alert_id for m in model):
                model.append(a)
        elif roll < 0.6:
            alert_id = f"x{rng.randrange(400)}"
            outcome = cancel(book, Cancel(alert_id, "u", "AAPL"), "AAPL", Position(0, step))
            model = [m for m in model if m.alert_id != alert_id]
        else:
            price = D(rng.randrange(85, 116))
            if book is None:
                continue
            book, events = on_trade(book, price, state_after(str(price)))
            crossed = [
                m for m in model if (D(m.price) <= price if m.direction == ABOVE else D(m.price) >= price)
            ]
            expected = sorted(
                crossed,
                key=lambda m: (
                    m.direction,
                    D(m.price) if m.direction == ABOVE else -D(m.price),
                    model.index(m),
                ),
            )
            assert [e.alert for e in events] == expected
            model = [m for m in model if m not in crossed]
            continue
        book = outcome.book
        assert book is not None or not model
        if book is not None:
            assert sorted(a.alert_id for a in book.alerts()) == sorted(m.alert_id for m in model)
            assert sorted(book.by_id) == sorted(m.alert_id for m in model)
