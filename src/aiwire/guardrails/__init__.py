"""Guardrails on what leaves for a model provider and what comes back.

- :mod:`~aiwire.guardrails.pii`: find personal data (emails, phones, cards, IBANs, national
  IDs, IP addresses, custom regexes) and mask it, block the request, or let it pass.
- :mod:`~aiwire.guardrails.restore`: put masked values back into the answer (whole, streamed,
  raw OpenAI bytes).
- :mod:`~aiwire.guardrails.presidio`: Microsoft Presidio as an optional extra detector.
- :mod:`~aiwire.guardrails.hooks`: user functions that may reject a request or an answer.
"""

from aiwire.guardrails.detectors import BUILTIN, GROUPS, Detector, Finding, RegexDetector
from aiwire.guardrails.hooks import (
    ContentHookConfig,
    ContentPolicy,
    ContentPolicyViolation,
    HookContext,
    Reject,
    load_hook,
)
from aiwire.guardrails.pii import (
    CustomPattern,
    PIIGuard,
    PIIPolicy,
    PresidioOptions,
    Redaction,
    build_detector,
)
from aiwire.guardrails.restore import StreamRestorer, Vault

__all__ = [
    "BUILTIN",
    "GROUPS",
    "ContentHookConfig",
    "ContentPolicy",
    "ContentPolicyViolation",
    "CustomPattern",
    "Detector",
    "Finding",
    "HookContext",
    "PIIGuard",
    "PIIPolicy",
    "PresidioOptions",
    "Redaction",
    "RegexDetector",
    "Reject",
    "StreamRestorer",
    "Vault",
    "build_detector",
    "load_hook",
]
