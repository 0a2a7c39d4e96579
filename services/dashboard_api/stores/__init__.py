"""Reading what the pipeline wrote: states from Redis, bars from PostgreSQL."""
