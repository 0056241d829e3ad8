"""Loading a flow file: YAML → :class:`FlowSpec` → :class:`Flow`, with errors at file:line.

Errors name the file, the line and the field (``lead.yaml:12: steps[1].fields.created_on:
unknown transform 'dat'``), the way :mod:`aiwire.config` reports configuration errors: the YAML
is composed once to keep each node's position, and a pydantic location is walked down that node
tree (skipping the discriminator tags pydantic inserts for ``kind:`` unions).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel, ValidationError

from aiwire.errors import ConfigError
from aiwire.flows.definition import (
    ClassifyStep,
    FlowSpec,
    Loc,
    ModelStep,
    Step,
    semantic_problems,
)
from aiwire.secrets import Secret, resolve

Schema = dict[str, Any] | type[BaseModel]


class FlowError(ConfigError):
    """A flow file is invalid; the message lists every problem as ``file:line: field: why``."""


@dataclass
class Flow:
    """A validated flow, ready to run: its spec, where it came from, resolved schemas."""

    spec: FlowSpec
    path: Path | None = None
    #: JSON schema or pydantic model per model-step id.
    schemas: dict[str, Schema] = field(default_factory=dict)
    #: sha256 of the file's text: tells a changed definition apart in run history.
    digest: str = ""
    _secrets: dict[str, Secret] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve_path(self, relative: str) -> Path:
        """A path from the flow file, relative to the file's directory."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def secrets(self) -> dict[str, Secret]:
        """The declared secrets, resolved on first use (a missing one names its variable)."""
        if self._secrets is None:
            self._secrets = {
                name: resolve(ref, field=f"{self.name}: secrets.{name}")
                for name, ref in self.spec.secrets.items()
            }
        return self._secrets

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing error texts (empty before first resolution)."""
        return tuple(s.reveal() for s in (self._secrets or {}).values())

    def steps(self) -> list[tuple[str, Step]]:
        return list(zip(self.spec.step_ids(), self.spec.steps, strict=True))


def load_flow(path: str | Path, *, vars: dict[str, Any] | None = None) -> Flow:
    """Read and validate a flow file; :class:`FlowError` lists everything wrong with it.
    ``vars`` override the file's ``vars:`` (only names it declares, so a typo is an error)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(f"cannot read flow file {path}: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FlowError(f"{path}: the top level must be a mapping (name:, source:, steps:, sinks:)")
    if vars:
        given = data.get("vars")
        declared: dict[str, Any] = given if isinstance(given, dict) else {}
        unknown = sorted(set(vars) - set(declared))
        if unknown:
            raise FlowError(
                f"{path}: --var {', '.join(unknown)}: not declared under vars: "
                f"(declared: {', '.join(sorted(declared)) or 'none'})"
            )
        data["vars"] = {**declared, **vars}
    return _build(data, str(path), node, path.resolve(), hashlib.sha256(text.encode()).hexdigest())


def flow_from_dict(data: dict[str, Any], *, base_dir: Path | None = None) -> Flow:
    """A flow from already-parsed data (tests, programmatic use); errors have no line numbers."""
    where = (base_dir / "flow.yaml").resolve() if base_dir is not None else None
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return _build(data, "flow", None, where, digest)


def _build(
    data: dict[str, Any], source: str, node: yaml.Node | None, path: Path | None, digest: str
) -> Flow:
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[Loc, str]] = [
            (tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()
        ]
        raise FlowError(_describe(problems, source, node)) from None
    problems = semantic_problems(spec)
    flow = Flow(spec=spec, path=path, digest=digest)
    for i, (sid, step) in enumerate(flow.steps()):
        if isinstance(step, ModelStep) and step.schema_ is not None:
            try:
                flow.schemas[sid] = _schema(step.schema_, flow)
            except ValueError as exc:
                problems.append((("steps", i, "schema"), str(exc)))
        elif isinstance(step, ClassifyStep):
            flow.schemas[sid] = {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": list(step.labels)}},
                "required": ["label"],
            }
    if problems:
        raise FlowError(_describe(problems, source, node))
    return flow


def _schema(value: dict[str, Any] | str, flow: Flow) -> Schema:
    if isinstance(value, dict):
        schema = value
    elif value.startswith("file:"):
        target = flow.resolve_path(value[5:].strip())
        try:
            raw = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read schema file {target}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(raw)  # JSON is YAML
        except yaml.YAMLError as exc:
            raise ValueError(f"schema file {target} is not JSON or YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"schema file {target} must hold a JSON schema object")
        schema = loaded
    elif ":" in value:
        module_name, _, attr = value.partition(":")
        try:
            model = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import pydantic model {value!r}: {exc}") from None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ValueError(f"{value!r} is not a pydantic model class")
        return model
    else:
        raise ValueError(
            "schema: give a JSON schema object, file:path/to/schema.json or "
            "package.module:PydanticModel"
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(map(str, exc.path)) or "(root)"
        raise ValueError(f"not a valid JSON schema at {where}: {exc.message}") from None
    return schema


# --- error locations ----------------------------------------------------------------------------


def _describe(problems: list[tuple[Loc, str]], source: str, node: yaml.Node | None) -> str:
    lines = []
    for loc, msg in problems:
        line, shown = _locate(node, loc)
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in shown).lstrip(".")
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {dotted or '(top level)'}: {msg}")
    return "invalid flow:\n  " + "\n  ".join(lines)


def _locate(node: yaml.Node | None, loc: Loc) -> tuple[int | None, list[str | int]]:
    """The line of ``loc`` in the YAML tree and the location as the user wrote it (without
    pydantic's union tags and shorthand expansions)."""
    if node is None:
        return None, [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    line: int | None = node.start_mark.line + 1
    shown: list[str | int] = []
    current: yaml.Node | None = node
    for i, part in enumerate(loc):
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            values = {getattr(k, "value", None): v for k, v in current.value}
            match = values.get(part)
            if match is None:
                kind = values.get("kind")
                if part == "ops" or (isinstance(kind, yaml.ScalarNode) and kind.value == part):
                    continue  # pydantic's union tag, or the expansion of a shorthand
                # a field the user left out: name it, at its parent's line
                shown.extend(p for p in loc[i:] if not str(p).startswith("function-"))
                break
            current = match
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            current = current.value[part]
        else:
            continue
        shown.append(part)
        line = current.start_mark.line + 1
    return line, shown
