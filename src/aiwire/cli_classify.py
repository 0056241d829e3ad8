"""``aiwire classify``: label texts from a fixed label set, by a chat model (validated JSON) or
by embedding similarity (see :mod:`aiwire.classify`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from aiwire.classify import Method
    from aiwire.config import Config

Texts = Annotated[
    list[str] | None,
    typer.Argument(help="Texts to label. Use - (or give none) to read one text per line of stdin."),
]


def classify(
    texts: Texts = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name from the config.")] = "",
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="A label; repeat it, or give several separated by commas. "
            "Write label=description to describe one.",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(help="chat (a chat model answers with a label) or embeddings (cosine)."),
    ] = "chat",
    min_score: Annotated[
        float | None,
        typer.Option(help="embeddings: below this similarity a text gets no label."),
    ] = None,
    retries: Annotated[int, typer.Option(help="chat: re-asks after an invalid answer.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file.", exists=True, dir_okay=False),
    ] = None,
    simulator: Annotated[
        bool, typer.Option("--simulator", help="Start the built-in simulator and use it.")
    ] = False,
) -> None:
    """Label each text with one of a fixed set of labels.

    Example: aiwire classify "Where is my refund?" "Great service!" -m gpt-4o-mini
    -l complaint -l praise -l question
    By similarity: cat tickets.txt | aiwire classify -m local-embed --method embeddings
    -l "billing=questions about invoices and refunds" -l "bug=something does not work"
    """
    from aiwire.cli import _config, _friendly_errors
    from aiwire.client import AsyncClient

    console = Console()
    if not model:
        raise typer.BadParameter("give the model to classify with", param_hint="--model")
    if method not in ("chat", "embeddings"):
        raise typer.BadParameter("chat or embeddings", param_hint="--method")
    label_map = _labels(labels or [])
    items = [t for t in (texts or []) if t != "-"]
    if not items:
        items = [line.strip() for line in sys.stdin if line.strip()]
    if not items:
        raise typer.BadParameter("no text to classify", param_hint="TEXTS")

    async def run(cfg: Config) -> None:
        async with AsyncClient(cfg) as client:
            results = await client.classify(
                model,
                items,
                label_map,
                method=cast("Method", method),
                retries=retries,
                min_score=min_score,
            )
        if as_json:
            for r in results:
                typer.echo(json.dumps(r.model_dump(exclude_none=True)))
            return
        table = Table(title=f"Labels by {model} ({method})")
        table.add_column("text", overflow="fold")
        table.add_column("label")
        if method == "embeddings":
            table.add_column("score", justify="right")
        for r in results:
            row = [escape(r.text), escape(r.label) if r.label else "[yellow](none)[/]"]
            if method == "embeddings":
                row.append(f"{r.score:.3f}" if r.score is not None else "-")
            table.add_row(*row)
        console.print(table)

    with _friendly_errors(), _config(config, simulator) as cfg:
        asyncio.run(run(cfg))


def _labels(given: list[str]) -> dict[str, str]:
    """``-l a,b -l "c=what c means"`` → ``{a: a, b: b, c: what c means}``."""
    out: dict[str, str] = {}
    for item in given:
        pieces = [item] if "=" in item else item.split(",")
        for piece in pieces:
            name, _, description = piece.partition("=")
            name = name.strip()
            if name:
                out[name] = description.strip() or name
    if len(out) < 2:
        raise typer.BadParameter("give at least two labels", param_hint="--label")
    return out


__all__ = ["classify"]
