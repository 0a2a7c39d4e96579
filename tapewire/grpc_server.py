"""Serving gRPC the same way in every service: health, reflection, bounds and token auth.

`start_grpc_server` starts a `grpc.aio` server with the given services and, beside them, the
standard health service (`grpc.health.v1.Health`, each service SERVING until shutdown) and
reflection (so grpcurl can list and call the services without the .proto files).

Auth: with a `TokenVerifier`, every call must carry the metadata "authorization: Bearer <jwt>",
except health checks and reflection (load balancers and grpcurl use them without credentials);
others are refused with UNAUTHENTICATED and the reason. A servicer learns who is calling from
`current_principal()`. The interceptor stores the principal in a context variable: grpc.aio calls
the interceptors and then the handler in one `contextvars.Context` of the RPC's own (documented
on `grpc.aio.ServerInterceptor`), so the value is the caller's and no other RPC sees it. Without
a verifier (auth off) every caller is `Principal.anonymous(admin=True)`.

Bounds: the size of one received message, the concurrent RPCs of the whole server (beyond that,
RESOURCE_EXHAUSTED) and the concurrent streams of one HTTP/2 connection (beyond that, the client
waits). `GrpcServer.stop` says NOT_SERVING on the health service, then gives running RPCs a
grace period before cancelling them.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Self

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import BaseModel, PrivateAttr, model_validator

from tapewire.auth import Principal, TokenVerifier, Unauthorized
from tapewire.errors import ConfigurationError

log = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_SERVICE: str = reflection.SERVICE_NAME
# Reachable without a token: probes and tooling must work before anyone has credentials.
OPEN_SERVICES = frozenset({HEALTH_SERVICE, REFLECTION_SERVICE, "grpc.reflection.v1.ServerReflection"})
AUTHORIZATION_KEY = "authorization"

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "tapewire_grpc_principal", default=None
)


def current_principal() -> Principal:
    """Who is calling the RPC being handled; only valid inside a servicer of `start_grpc_server`."""
    principal = _principal.get()
    if principal is None:
        raise RuntimeError("current_principal() called outside an RPC served by tapewire.grpc_server")
    return principal


@dataclass(frozen=True, slots=True)
class Service:
    """One service to serve: its full proto name and the generated `add_<X>Servicer_to_server`.

    e.g. `Service("tapewire.v1.Ingest", servicer, ingest_pb2_grpc.add_IngestServicer_to_server)`.
    """

    name: str
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """The server's certificate chain and private key, PEM, as read from their files."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)

    @classmethod
    def from_files(cls, certificate: Path | None, key: Path | None, prefix: str) -> TlsIdentity | None:
        """Both files or neither (None); ValueError naming `<prefix>TLS_*` when one is missing
        or unreadable, so that a service refuses to start rather than serve plaintext."""
        if certificate is None and key is None:
            return None
        if certificate is None or key is None:
            raise ValueError(f"{prefix}TLS_CERT_FILE and {prefix}TLS_KEY_FILE go together")
        try:
            identity = cls(certificate.read_bytes(), key.read_bytes())
        except OSError as exc:
            raise ValueError(f"{prefix}TLS_*: cannot read {exc.filename} ({exc.strerror})") from exc
        if b"-----BEGIN" not in identity.certificate_chain or b"-----BEGIN" not in identity.private_key:
            raise ValueError(f"{prefix}TLS_CERT_FILE and {prefix}TLS_KEY_FILE must be PEM files")
        return identity


class GrpcTlsFiles(BaseModel):
    """Two settings of a service with a gRPC server, `<PREFIX>GRPC_TLS_CERT_FILE` and
    `<PREFIX>GRPC_TLS_KEY_FILE`: its certificate chain and key (PEM); unset, plaintext. Mixed into
    the service's settings class, which gives the prefix; the files are read and checked once,
    with the rest of the settings, so a bad pair stops the service at start-up."""

    grpc_tls_cert_file: Path | None = None
    grpc_tls_key_file: Path | None = None
    _grpc_tls: TlsIdentity | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _read_grpc_tls(self) -> Self:
        prefix = f"{self.model_config.get('env_prefix', '')}GRPC_".upper()
        self._grpc_tls = TlsIdentity.from_files(self.grpc_tls_cert_file, self.grpc_tls_key_file, prefix)
        return self

    def grpc_tls(self) -> TlsIdentity | None:
        return self._grpc_tls


@dataclass(frozen=True, slots=True)
class GrpcServerOptions:
    """Where to listen and the server's bounds (each service builds this from its own settings)."""

    host: str = "0.0.0.0"
    port: int = 0  # 0: any free port (`GrpcServer.port` says which)
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_rpcs: int | None = None  # the whole server; None = unbounded
    max_concurrent_streams: int | None = None  # per HTTP/2 connection; None = gRPC's default
    tls: TlsIdentity | None = None  # None: plaintext (a mesh or a private network provides TLS)

    def channel_options(self) -> list[tuple[str, int]]:
        options = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            # gRPC sets SO_REUSEPORT by default, so a second server on a taken port would bind
            # "successfully" and share its traffic; we want the clear error instead.
            ("grpc.so_reuseport", 0),
        ]
        if self.max_concurrent_streams is not None:
            options.append(("grpc.max_concurrent_streams", self.max_concurrent_streams))
        return options


class GrpcServer:
    """A started server with its health service; `stop` it when done."""

    def __init__(
        self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, port: int
    ) -> None:
        self._server = server
        self._health = health_servicer
        self.port = port

    async def set_serving(self, service: str, serving: bool) -> None:
        """Report `service` ("" = the whole server) SERVING or NOT_SERVING to health checks."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set(service, status)

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING everywhere, no new RPCs, and running ones cancelled after `grace_s`."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def start_grpc_server(
    options: GrpcServerOptions,
    services: Sequence[Service],
    verifier: TokenVerifier | None = None,
) -> GrpcServer:
    """Build, bind and start the server; raises ConfigurationError if it cannot listen.

    Must be awaited on the event loop the server will run on.
    """
    pool = descriptor_pool.Default()
    for service in services:
        try:
            pool.FindServiceByName(service.name)
        except KeyError:
            raise ConfigurationError(
                f"unknown gRPC service {service.name!r} (import its _pb2 module)"
            ) from None
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(verifier)],
        options=options.channel_options(),
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
    )
    for service in services:
        service.add_to_server(service.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service.name for service in services]
    reflection.enable_server_reflection([*names, HEALTH_SERVICE, REFLECTION_SERVICE], server)
    for name in names:  # before start: a probe must never see an unknown service
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        port = _bind(server, options.host, options.port, options.tls)
    except ConfigurationError:
        await server.stop(None)
        raise
    await server.start()
    log.info(
        "grpc serving",
        extra={
            "host": options.host,
            "port": port,
            "services": names,
            "auth": verifier is not None,
            "tls": options.tls is not None,
        },
    )
    return GrpcServer(server, health_servicer, port)


def _bind(server: grpc.aio.Server, host: str, port: int, tls: TlsIdentity | None) -> int:
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials([(tls.private_key, tls.certificate_chain)])
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if bound == 0:  # older gRPC versions report failure this way
        raise ConfigurationError(f"cannot listen for gRPC on {address}")
    return bound


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the bearer token of every RPC (except `OPEN_SERVICES`) and records the caller."""

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if service_of(handler_call_details.method) in OPEN_SERVICES:
            return await continuation(handler_call_details)
        if self._verifier is None:
            _principal.set(Principal.anonymous(admin=True))
            return await continuation(handler_call_details)
        try:
            principal = self._verifier.verify_header(_authorization(handler_call_details))
        except Unauthorized as exc:
            log.info("grpc call refused", extra={"method": handler_call_details.method, "reason": exc.reason})
            handler = await continuation(handler_call_details)
            return None if handler is None else refusing_handler(handler, exc.reason)
        _principal.set(principal)
        return await continuation(handler_call_details)


def service_of(method: str) -> str:
    """ "/pkg.Service/Method" -> "pkg.Service"."""
    return method.lstrip("/").partition("/")[0]


def _authorization(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key.lower() == AUTHORIZATION_KEY:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def refusing_handler(
    handler: grpc.RpcMethodHandler[Any, Any], reason: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that ends the call with UNAUTHENTICATED."""
    detail = f'{reason} (send metadata "authorization: Bearer <jwt>")'

    async def refuse(_request: object, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, detail)

    async def refuse_streaming(
        _request: object, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, detail)
        yield  # pragma: no cover - unreachable: makes this an async generator, as streaming handlers are

    shape: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    streaming = handler.response_streaming
    return shape[(handler.request_streaming, streaming)](
        refuse_streaming if streaming else refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
