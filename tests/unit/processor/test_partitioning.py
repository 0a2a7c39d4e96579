"""The processor refuses topics whose partitions do not line up with the raw topic's."""

from __future__ import annotations

import pytest

from services.processor.service import check_partitioning
from tapewire.errors import ConfigurationError
from tapewire.settings import TopicSettings

TOPICS = TopicSettings()


def counts(raw: int = 6, commands: int = 6, outputs: int = 6) -> dict[str, int]:
    found = {TOPICS.raw: raw, TOPICS.commands: commands}
    found.update(dict.fromkeys((TOPICS.processed, TOPICS.processor_state, TOPICS.processor_alerts), outputs))
    return found


def test_equal_counts_and_more_output_partitions_are_fine() -> None:
    check_partitioning(TOPICS, counts())
    check_partitioning(TOPICS, counts(outputs=12))


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        (counts(outputs=3), "have fewer"),
        (counts(commands=12), "must be equal"),
        (counts(commands=3), "must be equal"),
    ],
)
def test_outputs_short_of_raw_or_commands_unequal_are_refused(shape: dict[str, int], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        check_partitioning(TOPICS, shape)
