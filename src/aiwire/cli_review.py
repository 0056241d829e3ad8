"""``aiwire review``: the human review queue of flows — list, show, approve, edit, reject.

Decisions are written to the flow store (``--store``: the same database the runner and the
gateway use), audited with the reviewer's name, and move the record on: it continues at the
flow's next run, at once with ``--run``, or within a minute when ``aiwire serve`` runs the flow.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from aiwire.cli_flows import (
    ConfigOpt,
    FlowsOpt,
    JsonOpt,
    SimOpt,
    StoreOpt,
    VarOpt,
    console,
    die,
    find_flow,
    open_router,
    open_store,
    parse_vars,
    print_json,
    run_async,
    store_url,
)

review_app = typer.Typer(
    name="review",
    help="Approve, edit or reject what flows are about to send.\n\n"
    "Example: aiwire review list --flow lead-followup, then aiwire review approve rev_...",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ReviewerOpt = Annotated[
    str | None,
    typer.Option("--reviewer", help="Who decides (audited; default: your login name)."),
]
RunOpt = Annotated[
    bool,
    typer.Option("--run", help="Continue the record now (its remaining steps and sinks)."),
]


def _reviewer(name: str | None) -> str:
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "cli"


@review_app.command("list")
def list_reviews(
    flow: Annotated[str | None, typer.Option(help="Only this flow.")] = None,
    status: Annotated[
        str,
        typer.Option(help="pending, approved, edited, rejected, expired, auto_approved or all."),
    ] = "pending",
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reviews waiting for a decision (or with --status, decided ones), oldest first.

    Example: aiwire review list --flow support-triage --json
    """

    async def work() -> Any:
        from aiwire.flows.review import ReviewQueue

        async with open_store(store_url(store, config)) as st:
            return await ReviewQueue(st).list(
                flow=flow, status=None if status == "all" else status, queue=queue, limit=limit
            )

    rows, total = run_async(work)
    if as_json:
        print_json({"data": rows, "total": total})
        return
    if not rows:
        console.print(f"No {status} reviews.", highlight=False)
        return
    table = Table(title=f"Reviews ({len(rows)} of {total})", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("flow / record", overflow="fold")
    table.add_column("waiting since", no_wrap=True)
    table.add_column("draft", overflow="ellipsis", no_wrap=True, max_width=40)
    for r in rows:
        shown = [r["draft"][p] for p in r["editable"] if p in r["draft"]] or list(
            r["draft"].values()
        )
        first = shown[0] if shown else ""
        text = first if isinstance(first, str) else orjson.dumps(first).decode()
        table.add_row(
            r["id"], f"{r['flow']} / {r['record']}", r["created_at"][:16].replace("T", " "),
            escape(" ".join(text.split())),
        )  # fmt: skip
    console.print(table)


@review_app.command()
def show(
    review_id: Annotated[str, typer.Argument(help="The review's id (rev_...).")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One review: the draft, what may be edited, and the source record it came from.

    Example: aiwire review show rev_0123456789abcdef01234567
    """

    async def work() -> Any:
        from aiwire.flows.review import ReviewQueue

        async with open_store(store_url(store, config)) as st:
            return await ReviewQueue(st).get(review_id)

    review = run_async(work)
    if as_json:
        print_json(review)
        return
    console.print(
        f"[bold]{review['id']}[/] {review['flow']} / {review['record']}: {review['status']}",
        highlight=False,
    )
    if review.get("instructions"):
        console.print(f"[italic]{escape(review['instructions'])}[/]")
    table = Table(show_header=True, box=box.SIMPLE_HEAD, title="Draft")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("editable")
    for path, value in review["draft"].items():
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        table.add_row(path, escape(text), "yes" if path in review["editable"] else "")
    console.print(table)
    console.print("[bold]Source record[/]")
    console.print_json(orjson.dumps(review["source"]).decode())


@dataclass
class _Continue:
    """Whether and how to continue the record after the decision (``--run``)."""

    run: bool
    config: Any
    simulator: bool
    store: str | None
    flows: str | None
    vars: list[str] | None


def _decide(
    action: str, review_id: str, reviewer: str, how: _Continue, **kw: Any
) -> dict[str, Any]:
    overrides = parse_vars(how.vars)

    async def work() -> Any:
        from aiwire.flows.review import ReviewQueue

        async with open_store(store_url(how.store, how.config)) as st:
            decided = await getattr(ReviewQueue(st), action)(review_id, reviewer=reviewer, **kw)
            if how.run:
                from aiwire.flows.runner import FlowRunner

                flow = await find_flow(decided["flow"], how.flows, st, overrides)
                async with open_router(how.config, how.simulator) as router:
                    runner = FlowRunner(st, router)
                    try:
                        await runner.run(
                            flow, trigger="review", read_source=False, keys=[decided["record"]]
                        )
                    finally:
                        await runner.aclose()
                record = await st.record(decided["flow"], decided["record"])
                decided["record_state"] = record.state if record else None
            return decided

    return dict(run_async(work))


def _report(decided: dict[str, Any], as_json: bool, run: bool) -> None:
    if as_json:
        print_json(decided)
        return
    after = (
        f"; the record is now {decided['record_state']}"
        if run
        else "; the record continues at the flow's next run (or now with --run)"
        if decided["status"] != "rejected" or decided.get("record_state") == "pending"
        else ""
    )
    who = escape(decided["reviewer"] or "-")
    console.print(
        f"{decided['id']}: [bold]{decided['status']}[/] by {who}{after}",
        highlight=False,
        soft_wrap=True,
    )


@review_app.command()
def approve(
    review_id: Annotated[str, typer.Argument(help="The review's id.")],
    reviewer: ReviewerOpt = None,
    run: RunOpt = False,
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    store: StoreOpt = None,
    flows: FlowsOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve the draft as it is.

    Example: aiwire review approve rev_0123456789abcdef01234567 --run --simulator
    """
    how = _Continue(run, config, simulator, store, flows, var)
    decided = _decide("approve", review_id, _reviewer(reviewer), how)
    _report(decided, as_json, run)


@review_app.command()
def edit(
    review_id: Annotated[str, typer.Argument(help="The review's id.")],
    sets: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="FIELD=VALUE for an editable field (repeatable); VALUE is JSON when it parses "
            "as JSON, else text.",
        ),
    ],
    reviewer: ReviewerOpt = None,
    run: RunOpt = False,
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    store: StoreOpt = None,
    flows: FlowsOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change editable fields of the draft, then approve it.

    A model's answer must stay valid against its schema.

    Example: aiwire review edit rev_0123... --set draft.subject="Our call on Tuesday"
    """
    edits: dict[str, Any] = {}
    for item in sets:
        field, sep, raw = item.partition("=")
        if not sep or not field.strip():
            die(f"--set {item!r}: write FIELD=VALUE, e.g. --set draft.subject='Hello'")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        edits[field.strip()] = value
    how = _Continue(run, config, simulator, store, flows, var)
    decided = _decide("edit", review_id, _reviewer(reviewer), how, edits=edits)
    _report(decided, as_json, run)


@review_app.command()
def reject(
    review_id: Annotated[str, typer.Argument(help="The review's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")],
    reviewer: ReviewerOpt = None,
    run: RunOpt = False,
    config: ConfigOpt = None,
    simulator: SimOpt = False,
    store: StoreOpt = None,
    flows: FlowsOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject the draft: nothing is sent (unless the step says on_reject: continue).

    Example: aiwire review reject rev_0123... --reason "wrong product"
    """
    how = _Continue(run, config, simulator, store, flows, var)
    decided = _decide("reject", review_id, _reviewer(reviewer), how, reason=reason)
    _report(decided, as_json, run)


@review_app.command()
def stats(
    flow: Annotated[str | None, typer.Option(help="Only this flow.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Acceptance per flow: how often reviewers approved the model's draft.

    As it was, or after edits: the number to watch before letting a flow send on its own.

    Example: aiwire review stats --json
    """

    async def work() -> Any:
        from aiwire.flows.review import ReviewQueue

        async with open_store(store_url(store, config)) as st:
            return await ReviewQueue(st).stats(flow)

    data = run_async(work)
    if as_json:
        print_json(data)
        return
    if not data:
        console.print("No reviews yet.")
        return
    table = Table(title="Review acceptance", box=box.SIMPLE_HEAD)
    for col in ("flow", "pending", "approved", "edited", "rejected", "auto", "expired",
                "accepted", "as is"):  # fmt: skip
        table.add_column(col, justify="left" if col == "flow" else "right")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    for name, s in data.items():
        table.add_row(
            name, str(s["pending"]), str(s["approved"]), str(s["edited"]), str(s["rejected"]),
            str(s["auto_approved"]), str(s["expired"]), pct(s["acceptance_rate"]),
            pct(s["approved_as_is_rate"]),
        )  # fmt: skip
    console.print(table)


__all__ = ["review_app"]
