"""Decimal strings, the representation of prices and sizes in proto/ (see market.proto).

Two ways in. `parse_amount` is the contract's grammar for every price and size that comes from
outside (a feed, a pushed tick, anything on the raw topic): plain ASCII digits with an optional
fraction, bounded in digits, so that every computation the processor does on it is total (no
`decimal` exception for any tick that passes validation, however extreme) and every value it
keeps is exact within `CONTEXT`. `parse` reads back the decimals tapewire itself wrote
(derived values such as a session's turnover may be larger than any single input).
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation
from functools import lru_cache

# 34 significant digits (IEEE decimal128) is far beyond any price or size a venue publishes.
# Sums of many products (a session's turnover) that outgrow it are rounded half-even to 34
# significant digits; nothing within the bounds below can overflow or trap.
CONTEXT = Context(prec=34)
ZERO = Decimal(0)

# The bounds of a price or size: below 10^15 (a quadrillion: no price or lot size comes near) and
# no finer than 10^-15 (crypto venues quote to 10^-8, FX to 10^-5). 15 + 15 digits is within
# CONTEXT's 34, so every input is held exactly, and so is formatted and read back the same
# (a restored state computes exactly what the one before the crash would have).
MAX_INTEGER_DIGITS = 15
MAX_FRACTION_DIGITS = 15
# `[0-9]`, not `\d` (which matches every script's digits). No sign, exponent, spaces, "_",
# NaN or Infinity: Python's Decimal() accepts all of them, the contract none.
_AMOUNT = re.compile(rf"\A[0-9]{{1,{MAX_INTEGER_DIGITS}}}(?:\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?\Z")
GRAMMAR = (
    f"ASCII digits with an optional '.' and fraction, at most {MAX_INTEGER_DIGITS} digits before"
    f" the point and {MAX_FRACTION_DIGITS} after (no sign, exponent, spaces or '_')"
)


def parse_amount(text: str) -> Decimal | None:
    """A price or size in the contract's grammar (see GRAMMAR), or None when it breaks it."""
    if not _AMOUNT.match(text):
        return None
    return Decimal(text)


def parse(text: str) -> Decimal | None:
    """A decimal tapewire wrote, or None when it is empty, malformed, NaN or infinite."""
    if not text:
        return None
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def fmt(value: Decimal | None) -> str:
    """The canonical string of a decimal: no exponent, no trailing zeros; "" for None."""
    if value is None:
        return ""
    return _canonical(value)


# Prices and sizes repeat all day (a price grid, round lots): formatting is the processor's
# single largest cost per tick, and a cache hit is several times cheaper. Equal decimals with
# different exponents (1.50, 1.5) hash alike and share one canonical text, which is correct.
@lru_cache(maxsize=65_536)
def _canonical(value: Decimal) -> str:
    text = format(value.normalize(CONTEXT), "f")
    return "0" if text in ("-0", "0") else text
