"""Quickstart: the SDK against the built-in simulator, offline.

Run: python examples/quickstart.py
With real providers, replace the simulator block by ``Client("examples/aiwire.yaml")``.
"""

from __future__ import annotations

from pydantic import BaseModel

from aiwire import Client, errors
from aiwire.config import simulator_config
from aiwire.simulator import SimulatorServer


class Ticket(BaseModel):
    customer: str
    email: str
    topic: str


def main() -> None:
    with SimulatorServer() as sim, Client(simulator_config(sim.url)) as client:
        # One request format for every provider: only the model name changes.
        for model in ("sim-gpt", "sim-claude", "sim-gemini"):
            print(f"{model}: {client.chat(model, 'Say hello in five words.').text[:60]}")

        # Streaming.
        print("stream: ", end="")
        for chunk in client.stream("sim-claude", "Tell a one-line story."):
            print(chunk.text, end="", flush=True)
        print()

        # Structured output, validated against a pydantic model.
        ticket = client.extract(
            "sim-gemini",
            "From: Ola Nordmann <ola@example.no>. My invoice total is wrong.",
            schema=Ticket,
        )
        print(f"extracted: {ticket!r}")

        # Typed errors: a parameter a provider cannot honour is refused by name.
        try:
            client.chat("sim-claude", "hi", seed=42)
        except errors.BadRequestError as exc:
            print(f"refused: {exc.param} ({type(exc).__name__})")


if __name__ == "__main__":
    main()
