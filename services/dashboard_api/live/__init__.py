"""The live stream, whatever carries it: the relay from Redis pub/sub, one session per client
with its outbox, the protocol and its encoders, and the WebSocket and gRPC front ends."""
