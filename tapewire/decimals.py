"""Decimal strings, the representation of prices and sizes in proto/ (see market.proto)."""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation
from functools import lru_cache

# 34 significant digits (IEEE decimal128) is far beyond any price or size a venue publishes.
CONTEXT = Context(prec=34)
ZERO = Decimal(0)


def parse(text: str) -> Decimal | None:
    """The decimal in `text`, or None when it is empty, malformed, NaN or infinite."""
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
