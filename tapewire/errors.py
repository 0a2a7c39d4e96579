"""tapewire's exceptions: one root, one-line subclasses.

TapewireError
├── ConfigurationError      settings that cannot work (raised at start-up)
├── InvalidTick             a tick that breaks the contract (the reason is the message)
├── KafkaFailure            a Kafka call failed; keeps librdkafka's error code
│   └── DeliveryFailed      the broker did not acknowledge a produced record
├── StoreUnavailable        PostgreSQL or Redis could not be reached or written
└── Wedged                  a client library call will not return: the process ends at once
"""

from __future__ import annotations


class TapewireError(Exception):
    """Root of every error tapewire raises on purpose."""


class ConfigurationError(TapewireError):
    """Settings that cannot work."""


class InvalidTick(TapewireError):
    """A tick that breaks the contract in proto/; the message says which rule."""


class KafkaFailure(TapewireError):
    """A Kafka operation failed."""

    def __init__(self, message: str, code: int | None = None, retriable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class DeliveryFailed(KafkaFailure):
    """The broker did not acknowledge a produced record."""


class StoreUnavailable(TapewireError):
    """PostgreSQL or Redis could not be reached or written."""


class Wedged(TapewireError):
    """A client library call has not returned long after its own timeout. The service's
    start-up (tapewire/startup.py) ends the process at once, as a kill -9 would, skipping every
    clean-up: leaving a consumer group or closing a client would wait on the same stuck library."""
