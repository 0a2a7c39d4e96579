"""`python -m tools.create_topics`: create tapewire's topics if missing (partitions from TAPEWIRE_TOPIC_*)."""

from __future__ import annotations

from tapewire.kafka import ensure_all_topics
from tapewire.logs import configure_logging
from tapewire.settings import KafkaSettings, TopicSettings


def main() -> None:
    configure_logging("create_topics")
    ensure_all_topics(KafkaSettings(), TopicSettings(), timeout_s=60)


if __name__ == "__main__":
    main()
