"""The ingester: ticks from a source (simulator or replay) to Kafka `tt_raw_data`, keyed by instrument."""
