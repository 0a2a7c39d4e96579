"""`python -m tools.create_topics`: create tapewire's topics if missing (partitions from TAPEWIRE_TOPIC_*)."""

from __future__ import annotations

from tapewire.kafka import ensure_topics
from tapewire.logs import configure_logging
from tapewire.settings import KafkaSettings, TopicSettings


def main() -> None:
    configure_logging("create_topics")
    topics = TopicSettings()
    ensure_topics(
        KafkaSettings(),
        {
            topics.raw: topics.partitions,
            topics.processed: topics.partitions,
            topics.raw_dlq: topics.partitions,
        },
        topics.replication_factor,
        timeout_s=60,
    )


if __name__ == "__main__":
    main()
