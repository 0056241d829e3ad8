"""Running the simulator: in a background thread (tests, demo, benchmarks) or in the foreground."""

from __future__ import annotations

import contextlib

import uvicorn

from aiwire.serving import BackgroundServer, uvicorn_config
from aiwire.simulator.app import SimulatorApp, create_app
from aiwire.simulator.config import SimulatorConfig


class SimulatorServer(BackgroundServer):
    """A simulator on a local port, served from a background thread with its own event loop.

    ``with SimulatorServer() as sim: OpenAI(base_url=f"{sim.url}/v1", api_key="x")``.
    ``port=0`` picks a free port.
    """

    name = "simulator"

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        super().__init__(create_app(self.config), host, port)

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        super().start(timeout)
        return self

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def _before_stop(self) -> None:
        loop = self.loop
        if isinstance(self.app, SimulatorApp) and loop is not None and not loop.is_closed():
            # end `hang` faults now, so the server can finish its responses
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.app.sim.shutdown.set)


def run(host: str = "127.0.0.1", port: int = 8787, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator in the foreground until interrupted (``aiwire simulate``)."""
    app = create_app(config)
    uvicorn.Server(uvicorn_config(app, host=host, port=port)).run()
