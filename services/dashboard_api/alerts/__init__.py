"""Price alerts as clients use them: the request rules, the commands sent to Kafka, the store
of a user's alerts, and what a session does with them."""
