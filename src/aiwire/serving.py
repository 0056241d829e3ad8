"""Serving an ASGI app with uvicorn: in a background thread (tests, demo, benchmarks) or in the
foreground (the CLI)."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal

import uvicorn


def uvicorn_config(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "off", **extra: Any
) -> uvicorn.Config:
    """uvicorn with the fastest parser installed, no access log, no server header."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    extra.setdefault("timeout_graceful_shutdown", 1)
    return uvicorn.Config(
        app,
        log_level="warning",
        lifespan=lifespan,
        loop="asyncio",
        http=http,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        **extra,
    )


class BackgroundServer:
    """An ASGI app on a local port, served from a background thread with its own event loop.
    ``port=0`` picks a free port; ``url`` tells which."""

    name = "server"

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: Any
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._options = uvicorn_options
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.app, **self._options))
        server = self._server

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by start()
                self._error = exc
            finally:
                sock.close()
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"aiwire-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start in time")
            time.sleep(0.005)
        return self

    def _before_stop(self) -> None:
        """A hook for subclasses: release anything that would hold the shutdown up."""

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._before_stop()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = self._loop = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = "running" if self._thread is not None else "stopped"
        return f"{type(self).__name__}({self.url!r}, {running})"
