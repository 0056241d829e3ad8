"""Running the simulator: in a background thread (tests, demo, benchmarks) or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from aiwire.simulator.app import SimulatorApp, create_app
from aiwire.simulator.config import SimulatorConfig


def _uvicorn_config(app: Any, **extra: Any) -> uvicorn.Config:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        loop="asyncio",
        http=http,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,
        **extra,
    )


class SimulatorServer:
    """A simulator on a local port, served from a background thread with its own event loop.

    ``with SimulatorServer() as sim: OpenAI(base_url=f"{sim.url}/v1", api_key="x")``.
    ``port=0`` picks a free port.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.app))
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

        self._thread = threading.Thread(target=serve, name="aiwire-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"simulator failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("simulator did not start in time")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        app = self.app
        if isinstance(app, SimulatorApp) and loop is not None and not loop.is_closed():
            # end `hang` faults now, so the server can finish its responses
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(app.sim.shutdown.set)
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = self._loop = None

    def __enter__(self) -> SimulatorServer:
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
        return f"SimulatorServer({self.url!r}, {running})"


def run(host: str = "127.0.0.1", port: int = 8787, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator in the foreground until interrupted (``aiwire simulate``)."""
    app = create_app(config)
    uvicorn.Server(_uvicorn_config(app, host=host, port=port)).run()
