"""Sandboxed Jinja2 templates over a record: prompts, sink URLs, bodies and headers.

``Dear {{ first_name | title }}, thanks for your interest in {{ product }}.``

The environment is Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` (no access to Python
internals: ``{{ ''.__class__ }}`` fails), with undefined names raising (a typo in a field name
fails the record with the name in the message instead of silently rendering nothing; write
``{{ notes | default('') }}`` for optional fields) and repetition capped. Templates are compiled
once, when the flow file is loaded, so a syntax error is reported with the file and line.

A JSON structure (an HTTP sink's ``json:``) is rendered value by value; a string that is exactly
one ``{{ expression }}`` keeps the expression's type (a list stays a list, a number a number).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from aiwire.errors import AIWireError

#: Longest string or list a template operator may build.
MAX_SIZE = 1_000_000
_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


class TemplateError(AIWireError):
    """A template does not compile (load time) or failed on a record (run time)."""


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the power operator is disabled in flow templates")
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list) and isinstance(n, int) and len(seq) * n > MAX_SIZE:
                raise SecurityError(f"result would be longer than {MAX_SIZE}")
        return super().call_binop(context, operator, left, right)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _env() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["json"] = _json
    return env


ENV = _env()


@lru_cache(maxsize=1024)
def _compiled(text: str) -> Any:
    return ENV.from_string(text)


@lru_cache(maxsize=1024)
def _expression(text: str) -> Any:
    return ENV.compile_expression(text, undefined_to_none=False)


def check(text: str) -> None:
    """Compile ``text`` or raise :class:`TemplateError` saying where it is wrong."""
    try:
        _compiled(text)
        single = _SINGLE.match(text)
        if single and "{{" not in single.group(1):
            _expression(single.group(1))
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error on its line {exc.lineno}: {exc.message}"
        ) from None


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render one template over ``context`` (a record plus ``_key``, ``_flow``, ...)."""
    try:
        return str(_compiled(text).render(context))
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error on its line {exc.lineno}: {exc.message}"
        ) from None
    except UndefinedError as exc:
        raise TemplateError(f"template refers to a missing field: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template refused by the sandbox: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in a JSON structure; ``"{{ expr }}"`` alone keeps its type."""
    if isinstance(value, str):
        single = _SINGLE.match(value)
        if single and "{{" not in single.group(1) and "}}" not in single.group(1):
            try:
                result = _expression(single.group(1))(**context)
                if isinstance(result, Undefined):
                    result._fail_with_undefined_error()
                return result
            except UndefinedError as exc:
                raise TemplateError(f"template refers to a missing field: {exc.message}") from None
            except SecurityError as exc:
                raise TemplateError(f"template refused by the sandbox: {exc}") from None
            except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
                raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None
        return render(value, context) if is_template(value) else value
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def check_value(value: Any) -> None:
    """:func:`check` every string inside a JSON structure."""
    if isinstance(value, str):
        if is_template(value):
            check(value)
    elif isinstance(value, dict):
        for v in value.values():
            check_value(v)
    elif isinstance(value, list):
        for v in value:
            check_value(v)
