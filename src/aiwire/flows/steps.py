"""The data steps: ``map``, ``transform``, ``prompt``, ``branch``, ``filter``, ``review``.

Each is a pure function of the record (no I/O), so re-running one after a crash gives the same
result. The model steps (``model``, ``classify``, ``chunk``) live in :mod:`aiwire.flows.llm`.
"""

from __future__ import annotations

import copy
from typing import Any

from aiwire.flows import paths, templates
from aiwire.flows.context import Outcome, RecordContext, ReviewRequest, StepFailure
from aiwire.flows.definition import (
    BranchStep,
    FilterStep,
    MapStep,
    PromptStep,
    ReviewStep,
    TransformStep,
)
from aiwire.flows.expressions import ExpressionError, compile_expression
from aiwire.flows.transforms import TransformError, apply_ops


def run_map(step: MapStep, ctx: RecordContext) -> Outcome:
    source = ctx.data
    out: dict[str, Any] = copy.deepcopy(source) if step.keep else {}
    if step.keep:
        for mf in step.fields.values():  # a rename moves the field: drop the old name
            if mf.from_ is not None and mf.from_ not in step.fields:
                paths.delete(out, mf.from_)
    for target, mf in step.fields.items():
        if mf.from_ is None:
            value = copy.deepcopy(mf.value)
        else:
            value = paths.get(source, mf.from_)
            if value is paths.MISSING or value is None or value == "":
                if mf.required and mf.default is None:
                    raise StepFailure(f"map: required field {mf.from_!r} is missing or empty")
                value = (
                    copy.deepcopy(mf.default)
                    if mf.default is not None
                    else (None if value is paths.MISSING else value)
                )
            else:
                value = copy.deepcopy(value)
        paths.set_(out, target, value)
    for p in step.drop:
        paths.delete(out, p)
    return Outcome(out)


def run_transform(step: TransformStep, ctx: RecordContext) -> Outcome:
    data = copy.deepcopy(ctx.data)
    names = ctx.names()
    for target, tf in step.fields.items():
        origin = tf.from_ or target
        value = paths.get(data, origin)
        try:
            result = apply_ops(tf.ops, None if value is paths.MISSING else value, names)
        except TransformError as exc:
            raise StepFailure(f"transform {target}: {exc.message}") from None
        paths.set_(data, target, result)
        names = {**names, **data}
    return Outcome(data)


def run_prompt(step: PromptStep, ctx: RecordContext) -> Outcome:
    data = copy.deepcopy(ctx.data)
    paths.set_(data, step.into, render(step.template, ctx))
    return Outcome(data)


def run_branch(step: BranchStep, ctx: RecordContext) -> Outcome:
    names = ctx.names()
    for case in step.cases:
        if test(case.when, names):
            target = case.goto
            break
    else:
        target = step.default
    if target == "drop":
        return Outcome(
            ctx.data, goto="drop", filtered=f"branch sent it to drop ({step.id or 'branch'})"
        )
    return Outcome(ctx.data, goto=target, output={"goto": target})


def run_filter(step: FilterStep, ctx: RecordContext) -> Outcome:
    if test(step.keep, ctx.names()):
        return Outcome(ctx.data)
    return Outcome(ctx.data, filtered=step.reason or f"filter: not ({step.keep})")


def run_review(step: ReviewStep, ctx: RecordContext) -> Outcome:
    """Auto-approve when the policy holds; otherwise ask the runner to hold the record."""
    names = ctx.names()
    draft = review_draft(step, ctx.data)
    if step.auto_approve is not None and test(step.auto_approve, names):
        data = copy.deepcopy(ctx.data)
        decision: dict[str, Any] = {
            "decision": "auto_approved",
            "reviewer": None,
            "reason": None,
            "edited": [],
            "auto": True,
        }
        data["_review"] = decision
        return Outcome(data, output={**decision, "draft": draft, "policy": step.auto_approve})
    return Outcome(
        ctx.data,
        review=ReviewRequest(
            draft=draft,
            editable=list(step.editable),
            queue=step.queue,
            instructions=step.instructions,
            timeout=step.timeout,
        ),
    )


def review_draft(step: ReviewStep, data: dict[str, Any]) -> dict[str, Any]:
    """What the reviewer sees: the ``show`` fields (default: all but ``_``-prefixed ones) and
    every ``editable`` field, by path."""
    shown = step.show or [k for k in data if not k.startswith("_")]
    draft: dict[str, Any] = {}
    for p in [*shown, *(e for e in step.editable if e not in shown)]:
        value = paths.get(data, p)
        draft[p] = None if value is paths.MISSING else value
    return draft


def render(text: str, ctx: RecordContext) -> str:
    try:
        return templates.render(text, ctx.names())
    except templates.TemplateError as exc:
        raise StepFailure(exc.message) from None


def test(expression: str, names: dict[str, Any]) -> bool:
    try:
        return compile_expression(expression).test(names)
    except ExpressionError as exc:
        raise StepFailure(exc.message) from None
