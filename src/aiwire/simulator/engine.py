"""Protocol-independent, deterministic generation: the "model" behind every simulated API.

The same :class:`GenerationRequest` always yields the same :class:`Generation`.

Token estimate (documented so tests can reason about it): a text costs ``ceil(len(text) / 4)``
tokens; the prompt costs 3, plus 4 per message (and for the system text) on top of its text, plus
8 per offered tool on top of its name, description and JSON parameters, plus the JSON of an
output schema, plus :data:`IMAGE_TOKENS` per image. Output costs the tokens of the text plus,
per tool call, 3 on top of its name and JSON arguments.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from aiwire.simulator.schemas import ValueGenerator

IMAGE_TOKENS = 85
Finish = Literal["stop", "length", "tool_calls"]

_FILLER = (
    "reliable", "integrations", "depend", "on", "careful", "retries", "and", "clear", "limits",
    "every", "request", "travels", "through", "a", "steady", "gateway", "with", "measured",
    "latency", "budgets", "the", "provider", "answers", "in", "predictable", "streams", "so",
    "fallbacks", "stay", "calm", "while", "tokens", "flow", "quietly", "between", "services",
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_PAIR = re.compile(r"\b([A-Z][\w-]*)\s+and\s+([A-Z][\w-]*)\b")


def count_tokens(text: str) -> int:
    """The simulator's token estimate for one text: ``ceil(len / 4)``."""
    return math.ceil(len(text) / 4) if text else 0


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationRequest:
    """What the model sees, stripped of protocol details.

    ``tool_mode`` is ``auto``, ``required``, ``none`` or ``named:NAME``. ``tool_results`` is set
    (possibly to an empty list) when the last turn carries tool results. ``variant`` tells choices
    of one request apart (OpenAI ``n``, Gemini ``candidateCount``).
    """

    last_user_text: str = ""
    system: str = ""
    turns: list[str] = field(default_factory=list)
    tool_results: list[str] | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_mode: str = "auto"
    parallel_tools: bool = True
    output_schema: dict[str, Any] | None = None
    json_mode: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    images: int = 0
    variant: int = 0

    def fingerprint(self) -> str:
        data = {
            "u": self.last_user_text,
            "s": self.system,
            "t": self.turns,
            "r": self.tool_results,
            "tools": [[t.name, t.description, t.parameters] for t in self.tools],
            "m": self.tool_mode,
            "p": self.parallel_tools,
            "o": self.output_schema,
            "j": self.json_mode,
            "x": self.max_tokens,
            "stop": self.stop,
            "i": self.images,
            "v": self.variant,
        }
        raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Generation:
    text: str
    tool_calls: list[ToolCall]
    finish: Finish
    input_tokens: int
    output_tokens: int
    stop_sequence: str | None
    fingerprint: str

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def call_id(self, prefix: str, index: int) -> str:
        """A stable id for tool call ``index`` (``call_…``, ``toolu_…``)."""
        digest = hashlib.sha256(f"{self.fingerprint}:{index}".encode()).hexdigest()
        return f"{prefix}{digest[:24]}"


def estimate_input_tokens(req: GenerationRequest) -> int:
    n = 3
    if req.system:
        n += 4 + count_tokens(req.system)
    for turn in req.turns:
        n += 4 + count_tokens(turn)
    for tool in req.tools:
        params = orjson.dumps(tool.parameters).decode()
        n += 8 + count_tokens(tool.name + tool.description + params)
    if req.output_schema is not None:
        n += count_tokens(orjson.dumps(req.output_schema).decode())
    return n + IMAGE_TOKENS * req.images


def generate(req: GenerationRequest) -> Generation:
    fp = req.fingerprint()
    seed = int(fp[:12], 16)
    input_tokens = estimate_input_tokens(req)
    calls = _tool_calls(req, seed)
    if calls:
        out = sum(3 + count_tokens(c.name + orjson.dumps(c.arguments).decode()) for c in calls)
        return Generation("", calls, "tool_calls", input_tokens, out, None, fp)
    if req.output_schema is not None:
        gen = ValueGenerator(
            req.output_schema, capitalised_words(req.last_user_text), seed, hint=req.last_user_text
        )
        text = orjson.dumps(gen.generate()).decode()
    elif req.json_mode:
        text = orjson.dumps({"answer": _prose(req, seed)}).decode()
    else:
        text = _prose(req, seed)
    finish: Finish = "stop"
    matched: str | None = None
    cut = [(text.find(s), s) for s in req.stop if s and s in text]
    if cut:
        pos, matched = min(cut)
        text = text[:pos]
    if req.max_tokens is not None and count_tokens(text) > req.max_tokens:
        text = _truncate(text, req.max_tokens)
        finish, matched = "length", None
    return Generation(text, [], finish, input_tokens, max(1, count_tokens(text)), matched, fp)


def capitalised_words(text: str) -> list[str]:
    """Capitalised words that do not start a sentence, in order ("Weather in Oslo?" → Oslo)."""
    out: list[str] = []
    for m in _WORD.finditer(text):
        word = m.group(0)
        before = text[: m.start()].rstrip()
        if not word[0].isupper() or word == "I" or not before or before[-1] in ".!?:;\n":
            continue
        out.append(word)
    return out


def _prose(req: GenerationRequest, seed: int) -> str:
    if req.tool_results is not None:
        results = "; ".join(_clip(r, 60) for r in req.tool_results) or "nothing"
        head = f"Based on the tool results: {results}."
        n_filler = 6 + seed % 6
    else:
        words = req.last_user_text.split()[:8]
        subject = " ".join(words).rstrip(".?!,;:") or "your message"
        head = f"Simulated reply to: {subject}."
        n_filler = 8 + seed % 9
    filler, x = [], seed
    for _ in range(n_filler):  # a 64-bit LCG walk: deterministic, well spread
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        filler.append(_FILLER[(x >> 33) % len(_FILLER)])
    sentence = " ".join(filler)
    return f"{head} {sentence[:1].upper()}{sentence[1:]}."


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _truncate(text: str, max_tokens: int) -> str:
    limit = max(0, max_tokens) * 4
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut


def _tool_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[_\-\s.]+", spaced) if len(w) >= 4]


def _tool_calls(req: GenerationRequest, seed: int) -> list[ToolCall]:
    if not req.tools or req.tool_mode == "none":
        return []
    lowered = req.last_user_text.lower()
    if req.tool_mode.startswith("named:"):
        name = req.tool_mode[len("named:") :]
        chosen = [t for t in req.tools if t.name == name] or [Tool(name)]
    else:
        if req.tool_mode == "auto" and req.tool_results is not None:
            return []
        chosen = [t for t in req.tools if any(w in lowered for w in _tool_words(t.name))]
        if not chosen and req.tool_mode == "required":
            chosen = [req.tools[0]]
    calls: list[ToolCall] = []
    words = capitalised_words(req.last_user_text)
    pair = _PAIR.search(req.last_user_text)
    for i, tool in enumerate(chosen):
        single = _single_required_string(tool.parameters)
        if pair and single:
            for value in pair.groups():
                args = ValueGenerator(
                    tool.parameters, [value], seed + i, hint=req.last_user_text
                ).generate()
                if isinstance(args, dict):
                    args[single] = value
                calls.append(ToolCall(tool.name, args if isinstance(args, dict) else {}))
            continue
        args = ValueGenerator(
            tool.parameters or {"type": "object"}, words, seed + i, hint=req.last_user_text
        ).generate()
        calls.append(ToolCall(tool.name, args if isinstance(args, dict) else {}))
    return calls if req.parallel_tools else calls[:1]


def _single_required_string(params: dict[str, Any]) -> str | None:
    required = params.get("required") or []
    props = params.get("properties") or {}
    if len(required) != 1 or not isinstance(props, dict):
        return None
    prop = props.get(required[0])
    t = prop.get("type") if isinstance(prop, dict) else None
    return required[0] if isinstance(t, str) and t.lower() == "string" else None
