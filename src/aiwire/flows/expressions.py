"""Safe expressions for conditions and computed fields, evaluated without ``eval``.

``confidence < 0.8 or category == 'refund'``, ``len(items) > 0``, ``round(amount * 1.2, 2)``,
``email.lower().endswith('@acme.test')``, ``'urgent' in tags``, ``priority if priority else 3``.

The text is parsed with :mod:`ast` and only a small set of node types is interpreted: constants,
names (record fields; a missing field is ``None``), attribute access into objects
(``lead.owner.email``), indexing, ``and``/``or``/``not``, comparisons, arithmetic (no ``**``),
conditional expressions, list/tuple literals, the functions in :data:`FUNCTIONS` and a few
string methods. There is no way to reach Python objects, import anything or loop, and string or
list repetition is capped, so an expression from a flow file can do no harm.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from aiwire.errors import AIWireError


class ExpressionError(AIWireError):
    """An expression is malformed (at load time) or failed on a record (at run time)."""


def _lower(x: Any) -> str:
    return str(x).lower()


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _contains(container: Any, item: Any) -> bool:
    return container is not None and item in container


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "lower": _lower,
    "upper": lambda x: str(x).upper(),
    "trim": lambda x: str(x).strip(),
    "coalesce": _coalesce,
    "contains": _contains,
}
_STR_METHODS = frozenset(
    {"lower", "upper", "strip", "title", "startswith", "endswith", "replace", "split"}
)
_CONSTANTS = {"true": True, "false": False, "null": None, "none": None}
_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
#: Longest string or list an expression may build by repetition or concatenation.
MAX_SIZE = 100_000
MAX_LENGTH = 2_000


class Expression:
    """A parsed expression; :meth:`evaluate` runs it over a record."""

    def __init__(self, text: str) -> None:
        self.text = text
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(
                f"invalid expression {text!r}: {exc.msg} at column {exc.offset or 0}"
            ) from None
        _check(tree.body, text)
        self._tree = tree.body

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        try:
            return _Eval(names).run(self._tree)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, KeyError, IndexError) as exc:
            raise ExpressionError(f"expression {self.text!r} failed: {exc}") from None

    def test(self, names: Mapping[str, Any]) -> bool:
        """The expression as a condition (Python truthiness)."""
        return bool(self.evaluate(names))


def _check(node: ast.AST, text: str) -> None:
    """Refuse, at load time, every construct the evaluator does not interpret."""
    for child in ast.walk(node):
        allowed = (
            ast.BoolOp,
            ast.And,
            ast.Or,
            ast.UnaryOp,
            ast.Not,
            ast.USub,
            ast.UAdd,
            ast.BinOp,
            ast.Compare,
            ast.IfExp,
            ast.Name,
            ast.Load,
            ast.Constant,
            ast.Attribute,
            ast.Subscript,
            ast.List,
            ast.Tuple,
            ast.Call,
            *_BINOPS,
            *_CMPOPS,
        )
        if not isinstance(child, allowed):
            what = type(child).__name__
            raise ExpressionError(f"invalid expression {text!r}: {what} is not allowed here")
        if isinstance(child, ast.Call):
            func = child.func
            if child.keywords:
                raise ExpressionError(f"invalid expression {text!r}: keyword arguments")
            if isinstance(func, ast.Name):
                if func.id not in FUNCTIONS:
                    known = ", ".join(sorted(FUNCTIONS))
                    raise ExpressionError(
                        f"invalid expression {text!r}: unknown function {func.id!r} "
                        f"(known: {known})"
                    )
            elif isinstance(func, ast.Attribute):
                if func.attr not in _STR_METHODS:
                    raise ExpressionError(
                        f"invalid expression {text!r}: method {func.attr!r} is not allowed "
                        f"(allowed: {', '.join(sorted(_STR_METHODS))})"
                    )
            else:
                raise ExpressionError(f"invalid expression {text!r}: only named functions")
        if isinstance(child, ast.Attribute | ast.Name):
            name = child.attr if isinstance(child, ast.Attribute) else child.id
            if name.startswith("__"):
                raise ExpressionError(f"invalid expression {text!r}: {name!r} is not allowed")


class _Eval:
    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = names

    def run(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            if node.id in FUNCTIONS:
                raise ExpressionError(f"{node.id} is a function: call it, e.g. {node.id}(x)")
            return _CONSTANTS.get(node.id.lower()) if node.id.lower() in _CONSTANTS else None
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                value: Any = True
                for v in node.values:
                    value = self.run(v)
                    if not value:
                        return value
                return value
            value = False
            for v in node.values:
                value = self.run(v)
                if value:
                    return value
            return value
        if isinstance(node, ast.UnaryOp):
            operand = self.run(node.operand)
            if isinstance(node.op, ast.Not):
                return not operand
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.Compare):
            left = self.run(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self.run(comparator)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.run(node.body) if self.run(node.test) else self.run(node.orelse)
        if isinstance(node, ast.Attribute):
            base = self.run(node.value)
            return base.get(node.attr) if isinstance(base, dict) else None
        if isinstance(node, ast.Subscript):
            return self._index(self.run(node.value), self.run(node.slice))
        if isinstance(node, ast.List | ast.Tuple):
            return [self.run(e) for e in node.elts]
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ExpressionError(f"{type(node).__name__} is not allowed")  # pragma: no cover

    def _binop(self, node: ast.BinOp) -> Any:
        left, right = self.run(node.left), self.run(node.right)
        if isinstance(node.op, ast.Mult):
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list) and isinstance(n, int) and len(seq) * n > MAX_SIZE:
                    raise ExpressionError(f"result would be longer than {MAX_SIZE}")
        result = _BINOPS[type(node.op)](left, right)
        if isinstance(result, str | list) and len(result) > MAX_SIZE:
            raise ExpressionError(f"result would be longer than {MAX_SIZE}")
        return result

    @staticmethod
    def _index(base: Any, key: Any) -> Any:
        if isinstance(base, dict):
            return base.get(key)
        if isinstance(base, list | str) and isinstance(key, int) and -len(base) <= key < len(base):
            return base[key]
        return None

    def _call(self, node: ast.Call) -> Any:
        args = [self.run(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name):
            return FUNCTIONS[func.id](*args)
        assert isinstance(func, ast.Attribute)
        target = self.run(func.value)
        if not isinstance(target, str):
            got = "nothing" if target is None else type(target).__name__
            raise ExpressionError(f".{func.attr}() needs text, got {got}")
        return getattr(target, func.attr)(*args)


@lru_cache(maxsize=1024)
def compile_expression(text: str) -> Expression:
    """A parsed expression, cached (flows evaluate the same few conditions for every record)."""
    return Expression(text)
