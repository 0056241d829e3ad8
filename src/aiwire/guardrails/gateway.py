"""The guardrails as the gateway applies them: which PII policy covers a request (its model's,
or the default, with the key's own ``pii`` option taking precedence), and the content hooks.

Built once from the config's ``guardrails:`` section; per request it costs a dictionary lookup
when no policy is active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from aiwire.guardrails.hooks import ContentHookConfig, ContentPolicy
from aiwire.guardrails.pii import Action, PIIGuard, PIIPolicy, Redaction
from aiwire.types import ChatRequest

if TYPE_CHECKING:  # the store (SQLAlchemy) is not needed to read a config
    from aiwire.store.keys import KeyRecord


class GuardrailsConfig(BaseModel):
    """``guardrails:`` in the config::

    guardrails:
      pii: {action: mask, kinds: [email, phone, credit_card, iban]}    # every request
      models:
        gpt-4o: {action: block}                 # this model name's own policy
      hooks:
        - {path: mycompany.policy:check, stages: [request]}

    A key's ``pii`` option (``off``, ``mask``, ``block``) overrides the action for its requests.
    """

    model_config = ConfigDict(extra="forbid")

    pii: PIIPolicy = Field(default_factory=PIIPolicy)
    models: dict[str, PIIPolicy] = Field(default_factory=dict)
    hooks: list[ContentHookConfig] = Field(default_factory=list)


class Guardrails:
    def __init__(self, config: GuardrailsConfig) -> None:
        self.config = config
        self._default = PIIGuard(config.pii)
        self._models = {name: PIIGuard(policy) for name, policy in config.models.items()}
        self._overridden: dict[tuple[int, Action], PIIGuard] = {}
        self.hooks = ContentPolicy.from_config(config.hooks)

    def guard_for(self, key: KeyRecord | None, model: str) -> PIIGuard | None:
        """The PII guard covering a request, or None when its action is ``off``."""
        guard = self._models.get(model, self._default)
        wanted = key.options.get("pii") if key is not None else None
        if wanted is not None and wanted != guard.policy.action:
            cache_key = (id(guard), wanted)
            overridden = self._overridden.get(cache_key)
            if overridden is None:
                policy = guard.policy.model_copy(update={"action": wanted})
                overridden = self._overridden[cache_key] = PIIGuard(policy, guard.detector)
            guard = overridden
        return None if guard.policy.action == "off" else guard

    async def before(
        self, key: KeyRecord | None, request: ChatRequest
    ) -> tuple[ChatRequest, Redaction | None]:
        """Mask (or refuse) personal data, then run the request hooks on what will be sent.
        Raises BadRequestError (``pii_detected`` or ``content_policy``)."""
        guard = self.guard_for(key, request.model)
        redaction = guard.apply(request) if guard is not None else None
        if redaction is not None:
            request = redaction.request
        if self.hooks.checks_requests:
            await self.hooks.check_request(request, key_name=key.name if key else None)
        return request, redaction
