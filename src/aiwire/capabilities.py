"""The capability matrix (provider type × feature), generated from the adapters' declarations.

``aiwire capabilities --markdown > docs/capabilities.md`` writes the published contract; a test
fails when the file and the adapters disagree.
"""

from __future__ import annotations

from aiwire.providers.base import FEATURES, Support
from aiwire.providers.registry import provider_class, provider_types

_MARK = {
    Support.SUPPORTED: "✅ supported",
    Support.EMULATED: "🔁 emulated",
    Support.REFUSED: "⛔ refused",
}


def matrix() -> dict[str, dict[str, Support]]:
    """``{provider_type: {feature: support}}`` for every registered adapter."""
    out: dict[str, dict[str, Support]] = {}
    for t in provider_types():
        caps = provider_class(t).capabilities
        out[t] = {f: caps.support(f) for f in FEATURES}
    return out


def markdown() -> str:
    types = provider_types()
    m = matrix()
    lines = [
        "# Capability matrix",
        "",
        "Generated from the adapters' own declarations by `aiwire capabilities --markdown`;",
        "a test keeps this file in step with the code.",
        "",
        "- **supported**: sent to the provider in its native form.",
        "- **emulated**: aiwire produces the same result another way (the note says how).",
        "- **refused**: the request fails with `BadRequestError` (HTTP 400, code",
        "  `unsupported_parameter`) naming the parameter. Nothing is silently dropped.",
        "",
        "| feature | " + " | ".join(f"`{t}`" for t in types) + " |",
        "|---|" + "---|" * len(types),
    ]
    for feature, label in FEATURES.items():
        cells = [_MARK[m[t][feature]] for t in types]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Notes", ""]
    for t in types:
        caps = provider_class(t).capabilities
        for feature, note in caps.notes.items():
            lines.append(f"- `{t}` / {FEATURES.get(feature, feature)}: {note}")
    lines += [
        "",
        "Request fields aiwire does not know are passed through unchanged to `openai`/`azure`",
        "(OpenAI-compatible servers have vendor parameters) and refused by name elsewhere.",
        "",
    ]
    return "\n".join(lines)
