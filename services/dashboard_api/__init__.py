"""dashboard_api: REST and WebSocket access to the live state cache_updater keeps in Redis.

settings.py   DashboardApiSettings (env prefix DASHBOARD_API_)
app.py        create_app(): lifespan opens Redis, PostgreSQL and the relay
server.py     the uvicorn server (closes WebSockets with 1001 on shutdown)
routes.py     the REST endpoints, thin
ws.py         the /ws endpoint: one Connection (queue + sender task) per client
fanout.py     the relay: one pattern subscription per process, render once, hand to many
protocol.py   client frames -> commands (pure)
views.py      states, bars and server messages -> JSON (pure)
states.py     reading states from Redis
bars.py       reading bars from PostgreSQL
metrics.py    Prometheus metrics, one registry per app
deps.py       the services the endpoints depend on (lifespan state)
"""
