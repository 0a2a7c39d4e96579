"""dashboard_api: REST, WebSocket and gRPC access to the live state cache_updater keeps in Redis.

settings.py          DashboardApiSettings (env prefix DASHBOARD_API_)
app.py               create_app(): the lifespan opens Redis, PostgreSQL, Kafka and the relay
server.py            the uvicorn server (closes WebSockets with 1001 on shutdown)
connection_limits.py TCP connection caps and the request-head deadline, before the app
metrics.py           Prometheus metrics, one registry per app
rest/                the REST endpoints (routes, admin, docs), what they depend on (deps), JSON views
live/                the live stream: relay (pub/sub -> sessions) and pubsub (its connection),
                     session and outbox (one client, the slow-client ladder), protocol and
                     encoders (frames in and out), limits, registry, ws and grpc_api (carriers)
alerts/              price alerts: requests (rules), commands (to Kafka), store (a user's alerts),
                     session_alerts (what a session does with them)
stores/              states (Redis) and bars (PostgreSQL), read-only
"""
