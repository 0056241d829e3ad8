"""What the parts of ``aiwire demo`` share: how a step is announced, how text is shortened."""

from __future__ import annotations

from rich.console import Console


def step(console: Console, n: int, title: str, what: str) -> None:
    console.print(f"\n[bold cyan]{n}. {title}[/]  [dim]{what}[/]")


def short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
