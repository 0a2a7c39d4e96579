"""Protobuf's wire format where tapewire writes bytes by hand: wrapping a message that is
already serialized costs a tag and a length, not a parse and a serialization."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field (`tag` already encoded) holding `body`."""
    return tag + varint(len(body)) + body
