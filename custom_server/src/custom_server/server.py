"""Composition and process management: settings -> model -> data plane -> app -> uvicorn.

One worker: uvicorn serves the app built here. Several: uvicorn's supervisor forks (spawns) worker
processes sharing the socket; each builds its app from the environment (``app_from_env``) and
metrics are shared through prometheus_client's multiprocess mode.

SIGTERM: uvicorn stops accepting connections, lets in-flight requests finish (up to
``GRACEFUL_TIMEOUT_S``), then the lifespan drains the batch queue. With ``SHUTDOWN_DELAY_S`` the
server first reports not-ready and keeps serving for that long, so Kubernetes takes the pod out of
its Service before connections are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess, multiprocess

from custom_server import __version__
from custom_server.dataplane import DataPlane
from custom_server.logs import configure_logging, flush_logging
from custom_server.metrics import Metrics
from custom_server.models import create_model
from custom_server.rest import create_app
from custom_server.rest.protocol import ConnectionLimits
from custom_server.settings import Settings

logger = logging.getLogger("custom_server.server")

#: Exit status when the server could not start (port taken...), as uvicorn uses.
STARTUP_FAILURE = 3

#: After the listeners close, how long connections accepted just before may take to send a request.
ACCEPT_GRACE_S = 0.2


def build_app(settings: Settings) -> FastAPI:
    """The app for these settings: model (not loaded yet), metrics, data plane, REST app."""
    metrics = Metrics(settings.model_name)
    data_plane = DataPlane(settings, create_model(settings), metrics)

    def drain_on_sigterm(_: FastAPI) -> contextlib.AbstractAsyncContextManager[None]:
        return _drain_on_sigterm(data_plane, settings.shutdown_delay_s)

    def serve_grpc(app: FastAPI) -> contextlib.AbstractAsyncContextManager[None]:
        return _serve_grpc(app, settings, data_plane)

    return create_app(
        settings,
        data_plane,
        lifespan_hooks=[_flush_logs_at_exit, drain_on_sigterm],
        serving_hooks=[serve_grpc] if settings.grpc_port else [],
    )


@contextlib.asynccontextmanager
async def _serve_grpc(app: FastAPI, settings: Settings, data_plane: DataPlane) -> AsyncIterator[None]:
    """The gRPC front end on the same data plane and loop; it stops accepting at SIGTERM."""
    from custom_server.grpc.server import GrpcServer

    server = GrpcServer(settings, data_plane)
    await server.start()
    app.state.stop_accepting.append(server.stop_accepting)
    try:
        yield
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def _flush_logs_at_exit(_: FastAPI) -> AsyncIterator[None]:
    """Worker processes end by a re-raised signal (no atexit): write queued log lines first."""
    try:
        yield
    finally:
        flush_logging()


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings from the environment."""
    settings = Settings()
    configure_logging(settings)
    return build_app(settings)


@contextlib.asynccontextmanager
async def _drain_on_sigterm(data_plane: DataPlane, delay: float) -> AsyncIterator[None]:
    """With a delay: on the first SIGTERM report not-ready, keep serving ``delay`` seconds, then hand
    the signal to uvicorn (which stops accepting and drains)."""
    if delay <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    fired = False

    def forward(sig: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(sig, frame)

    def handler(sig: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            forward(sig, frame)
            return
        fired = True
        data_plane.set_draining()
        logger.info("SIGTERM: not ready now, draining in %.1f s", delay)
        loop.call_soon_threadsafe(loop.call_later, delay, forward, sig, None)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)


class _Config(uvicorn.Config):
    """uvicorn's config plus the connection limits our HTTP protocol reads (pickled to workers)."""

    connection_limits: ConnectionLimits


def _uvicorn_config(settings: Settings, app: Any, **extra: Any) -> uvicorn.Config:
    config = _Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="custom_server.rest.protocol:ServerHttpProtocol",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        timeout_graceful_shutdown=max(1, math.ceil(settings.graceful_timeout_s)),
        backlog=2048,
        **extra,
    )
    config.connection_limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        timeout_headers_s=settings.timeout_headers_s,
    )
    return config


class _Server(uvicorn.Server):
    """uvicorn's server, closing its listeners as soon as SIGTERM/SIGINT arrives: uvicorn notices the
    signal on its next tick (up to 0.1 s later, more while the loop is busy), and connections accepted
    meanwhile would be reset when it closes them."""

    _loop: asyncio.AbstractEventLoop | None = None
    _serving_queued: set[asyncio.Task[Any]]
    _stopped_listening_at: float | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._serving_queued = set()
        await super().startup(sockets)

    def _protocol_factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.Protocol]:
        """The protocol uvicorn's own listeners make for each connection."""
        config = self.config
        return functools.partial(
            config.http_protocol_class,
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=loop,
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes at once every connection with no request read yet: give the ones accepted
        # just before the listeners closed the time to read the request their client already sent.
        if self._stopped_listening_at is not None:
            await asyncio.sleep(max(0.0, self._stopped_listening_at + ACCEPT_GRACE_S - time.monotonic()))
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and not self._loop.is_closed():
            # Signal handlers may interrupt the loop anywhere: hand the work to it.
            self._loop.call_soon_threadsafe(self._stop_listening)

    def _stop_listening(self) -> None:
        loop = self._loop
        for server in getattr(self, "servers", ()):
            # Connections the kernel completed but nobody accepted yet would be reset by the close:
            # take them first (accept until EAGAIN, then close at once: the window left is microseconds).
            if loop is not None:
                for listener in server.sockets:
                    for connection in _accept_queued(listener):
                        task = loop.create_task(loop.connect_accepted_socket(self._protocol_factory(loop), connection))
                        self._serving_queued.add(task)
                        task.add_done_callback(self._serving_queued.discard)
            server.close()
        self._stopped_listening_at = time.monotonic()
        state = getattr(self.config.loaded_app, "state", None)
        for stop in getattr(state, "stop_accepting", ()):
            stop()


def _accept_queued(listener: Any) -> list[socket.socket]:
    """Every connection waiting in ``listener``'s accept queue, accepted (non-blocking)."""
    accepted: list[socket.socket] = []
    # a duplicate of the listening socket: closing it leaves the server's own open
    with socket.socket(fileno=os.dup(listener.fileno())) as queue:
        queue.setblocking(False)
        while True:
            try:
                connection, _ = queue.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError:
                logger.warning("accepting a queued connection at shutdown failed", exc_info=True)
                return accepted
            connection.setblocking(False)
            accepted.append(connection)


class _Process(multiprocess.Process):
    """A worker process running ``_Server`` (uvicorn's runs its own ``Server``)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = _Server(config=self.config)
        return self._server


class ModelServer:
    """Runs the server with the given settings until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self) -> int:
        """Serve; the exit status (0 after a graceful shutdown)."""
        settings = self.settings
        configure_logging(settings)
        logger.info(
            "starting custom_server %s", __version__, extra={"settings": settings.redacted(), "pid": os.getpid()}
        )
        try:
            if settings.workers == 1:
                return self._run_single()
            return self._run_workers()
        finally:
            flush_logging()

    def _run_single(self) -> int:
        config = _uvicorn_config(self.settings, build_app(self.settings))
        server = _Server(config)
        # uvicorn re-raises the signal that stopped it once it has shut down; with handlers that do
        # nothing installed first, a graceful shutdown ends the process with status 0.
        with _quiet_signals():
            server.run()
        return 0 if server.started else STARTUP_FAILURE

    def _run_workers(self) -> int:
        created: Path | None = None
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            for stale in Path(directory).glob("*.db"):
                stale.unlink()
        else:
            created = Path(tempfile.mkdtemp(prefix="custom-server-metrics-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(created)
        try:
            config = _uvicorn_config(
                self.settings, "custom_server.server:app_from_env", factory=True, workers=self.settings.workers
            )
            sock = config.bind_socket()
            # uvicorn's supervisor makes its workers with the module's ``Process``: make them run ours.
            with _patched(multiprocess, "Process", _Process):
                _Supervisor(config, sockets=[sock]).run()
            return 0
        finally:
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, closing its own copy of the listening socket on SIGTERM/SIGINT:
    otherwise the kernel keeps accepting connections into a queue no worker will ever read. It does
    so in the signal handler itself: uvicorn handles signals between worker health checks, which can
    take seconds while a worker is busy."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._signalled = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signalled = True
        self._close_sockets()
        # The workers hold the socket too: pass the signal on now, so that they close it at once.
        for process in self.processes:
            pid = process.pid
            if pid is not None and process.process.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        self.signal_queue.append(sig)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def keep_subprocess_alive(self) -> None:
        if self._signalled:
            return  # stopping: a worker that ended must not be replaced
        try:
            super().keep_subprocess_alive()
        except (ValueError, OSError):
            if not self._signalled:
                raise
            # the signal came during the check and closed the socket a replacement would need

    def handle_term(self) -> None:
        self._close_sockets()
        super().handle_term()

    def handle_int(self) -> None:
        self._close_sockets()
        super().handle_int()


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def _quiet_signals() -> Any:
    def ignore(sig: int, frame: FrameType | None) -> None:
        return None

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
