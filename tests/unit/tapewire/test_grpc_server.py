"""The shared gRPC server on a loopback port: auth for every RPC shape, health, reflection, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from tapewire.auth import AuthSettings, TokenVerifier
from tapewire.errors import ConfigurationError
from tapewire.grpc_server import (
    GrpcServer,
    GrpcServerOptions,
    Service,
    current_principal,
    service_of,
    start_grpc_server,
)
from tapewire.v1 import dashboard_pb2, dashboard_pb2_grpc, ingest_pb2, ingest_pb2_grpc, market_pb2, stream_pb2

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]

SECRET = "a-test-secret-of-at-least-32-bytes!!"
VERIFIER = TokenVerifier.from_settings(AuthSettings(hs256_secret=SecretStr(SECRET)))


def token(user: str, roles: list[str] | None = None, exp_in_s: int = 300) -> str:
    claims = {"sub": user, "exp": int(time.time()) + exp_in_s, "roles": roles or []}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(user: str, **kwargs: Any) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token(user, **kwargs)}"),)


class WhoAmI(dashboard_pb2_grpc.DashboardServicer):
    """Answers with the caller's identity, in the unary and the server-streaming shape."""

    async def ListInstruments(
        self, request: dashboard_pb2.ListInstrumentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dashboard_pb2.ListInstrumentsResponse:
        await asyncio.sleep(0.01)  # let concurrent calls interleave
        principal = current_principal()
        return dashboard_pb2.ListInstrumentsResponse(
            instruments=[principal.user_id, "admin" if principal.is_admin else "user"]
        )

    async def Subscribe(
        self, request: stream_pb2.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[stream_pb2.ServerMessage]:
        for _ in range(2):
            yield stream_pb2.ServerMessage(error=stream_pb2.ServerError(reason=current_principal().user_id))


class CountTicks(ingest_pb2_grpc.IngestServicer):
    """Client streaming: counts the ticks and names the caller in the first rejection."""

    async def Push(
        self, request_iterator: AsyncIterator[market_pb2.Tick], context: grpc.aio.ServicerContext[Any, Any]
    ) -> ingest_pb2.PushSummary:
        count = 0
        async for _ in request_iterator:
            count += 1
        return ingest_pb2.PushSummary(
            accepted=count, rejections=[ingest_pb2.Rejection(reason=current_principal().user_id)]
        )


SERVICES = [
    Service("tapewire.v1.Dashboard", WhoAmI(), dashboard_pb2_grpc.add_DashboardServicer_to_server),
    Service("tapewire.v1.Ingest", CountTicks(), ingest_pb2_grpc.add_IngestServicer_to_server),
]


@contextlib.asynccontextmanager
async def serving(
    verifier: TokenVerifier | None = VERIFIER, **options: Any
) -> AsyncIterator[tuple[GrpcServer, grpc.aio.Channel]]:
    """A fresh server on a free loopback port and a channel to it; the server is stopped on exit."""
    server = await start_grpc_server(GrpcServerOptions(host="127.0.0.1", **options), SERVICES, verifier)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield server, channel
    finally:
        await server.stop(0)


async def test_an_authenticated_caller_is_known_to_every_rpc_shape() -> None:
    async with serving() as (_server, channel):
        dashboard = dashboard_pb2_grpc.DashboardStub(channel)
        reply = await dashboard.ListInstruments(
            dashboard_pb2.ListInstrumentsRequest(), metadata=bearer("alice", roles=["admin"])
        )
        assert list(reply.instruments) == ["alice", "admin"]
        messages = [
            m async for m in dashboard.Subscribe(stream_pb2.SubscribeRequest(), metadata=bearer("bob"))
        ]
        assert [m.error.reason for m in messages] == ["bob", "bob"]
        summary = await ingest_pb2_grpc.IngestStub(channel).Push(
            iter([market_pb2.Tick(), market_pb2.Tick()]), metadata=bearer("carol")
        )
        assert (summary.accepted, summary.rejections[0].reason) == (2, "carol")


async def test_concurrent_calls_each_see_their_own_caller() -> None:
    async with serving() as (_server, channel):
        dashboard = dashboard_pb2_grpc.DashboardStub(channel)
        users = [f"user{n}" for n in range(20)]
        replies = await asyncio.gather(
            *(
                dashboard.ListInstruments(dashboard_pb2.ListInstrumentsRequest(), metadata=bearer(u))
                for u in users
            )
        )
        assert [reply.instruments[0] for reply in replies] == users


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "missing bearer token"),
        ((("authorization", "Basic abc"),), "not a bearer token"),
        ((("authorization", "Bearer nonsense"),), "malformed token"),
        ((("authorization", f"Bearer {token('eve', exp_in_s=-60)}"),), "token expired"),
    ],
)
async def test_calls_without_a_valid_token_are_unauthenticated(
    metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    async with serving() as (_server, channel):
        dashboard = dashboard_pb2_grpc.DashboardStub(channel)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: dashboard.ListInstruments(dashboard_pb2.ListInstrumentsRequest(), metadata=metadata),
            lambda: _drain(dashboard.Subscribe(stream_pb2.SubscribeRequest(), metadata=metadata)),
            lambda: ingest_pb2_grpc.IngestStub(channel).Push(iter([market_pb2.Tick()]), metadata=metadata),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reason in (caught.value.details() or "")


async def _drain(stream: AsyncIterator[object]) -> list[object]:
    return [message async for message in stream]


async def test_without_a_verifier_every_caller_is_an_anonymous_admin() -> None:
    async with serving(verifier=None) as (_server, channel):
        reply = await dashboard_pb2_grpc.DashboardStub(channel).ListInstruments(
            dashboard_pb2.ListInstrumentsRequest()
        )
        assert list(reply.instruments) == ["anonymous", "admin"]


async def test_health_answers_without_a_token_and_turns_not_serving_on_stop() -> None:
    async with serving() as (server, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "tapewire.v1.Dashboard", "tapewire.v1.Ingest"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await server.set_serving("tapewire.v1.Ingest", False)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="tapewire.v1.Ingest"))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_services_without_a_token() -> None:
    async with serving() as (_server, channel):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]))]
        names = {service.name for service in replies[0].list_services_response.service}
        assert names == {
            "tapewire.v1.Dashboard",
            "tapewire.v1.Ingest",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }


async def test_messages_over_the_size_bound_are_refused() -> None:
    async with serving(max_receive_message_bytes=1_024) as (_server, channel):
        big = market_pb2.Tick(instrument="x" * 2_000)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest_pb2_grpc.IngestStub(channel).Push(iter([big]), metadata=bearer("alice"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rpcs_beyond_the_concurrency_bound_are_refused() -> None:
    async with serving(max_concurrent_rpcs=2) as (_server, channel):
        dashboard = dashboard_pb2_grpc.DashboardStub(channel)
        results = await asyncio.gather(
            *(
                dashboard.ListInstruments(dashboard_pb2.ListInstrumentsRequest(), metadata=bearer("u"))
                for _ in range(6)
            ),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert refused and all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
        assert len(refused) < len(results)


async def test_a_taken_port_is_a_clear_error() -> None:
    first = await start_grpc_server(GrpcServerOptions(host="127.0.0.1"), SERVICES)
    try:
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{first.port}"):
            await start_grpc_server(GrpcServerOptions(host="127.0.0.1", port=first.port), SERVICES)
    finally:
        await first.stop(0)


async def test_an_unknown_service_name_is_a_clear_error() -> None:
    bad = Service("tapewire.v1.Nope", WhoAmI(), dashboard_pb2_grpc.add_DashboardServicer_to_server)
    with pytest.raises(ConfigurationError, match=r"tapewire\.v1\.Nope"):
        await start_grpc_server(GrpcServerOptions(host="127.0.0.1"), [bad])


def test_current_principal_outside_an_rpc_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        current_principal()


def test_service_of() -> None:
    assert service_of("/grpc.health.v1.Health/Check") == "grpc.health.v1.Health"
    assert service_of("/tapewire.v1.Ingest/Push") == "tapewire.v1.Ingest"
