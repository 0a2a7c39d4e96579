"""`python -m tapewire.topics`: create tapewire's topics if missing (names, partitions and
replication from TAPEWIRE_TOPIC_*), as `python -m tapewire.db.migrate` migrates PostgreSQL. Part
of the library, not of the dev tools, so that the image (compose's `init`, the Kubernetes Job)
runs it without shipping tools/."""

from __future__ import annotations

from tapewire.kafka import ensure_all_topics
from tapewire.logs import configure_logging
from tapewire.settings import KafkaSettings, TopicSettings


def main() -> None:
    configure_logging("topics")
    ensure_all_topics(KafkaSettings(), TopicSettings(), timeout_s=60)


if __name__ == "__main__":
    main()
