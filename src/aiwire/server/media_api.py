"""The gateway's image and speech-to-text endpoints: ``POST /v1/images/generations`` and
``POST /v1/audio/transcriptions`` (OpenAI's protocol, so the official SDKs work unchanged).

Each follows the embeddings handler's path: authenticate, check the key's scope, admit it under
the key's limits and budgets (reserving the most it can cost), route it through the router
(retries, fallbacks, pacing, rollouts), answer, then settle its cost and hand the gateway a log
row. What differs is the price: images by the catalog's per-image price or the answer's token
usage, transcriptions by the answer's token usage or the audio's minutes (from the answer, else
the file's header). An upload is read whole under ``max_audio_bytes`` (OpenAI's 25 MB by
default); a larger one is refused with 413 before the rest of it is read.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiwire import errors
from aiwire.catalog import Catalog
from aiwire.limits.admission import Refused
from aiwire.limits.pricing import CatalogPricing
from aiwire.providers import multipart
from aiwire.providers.audio import duration_seconds
from aiwire.providers.media import (
    ImageRequest,
    ImageResponse,
    TranscriptionRequest,
    TranscriptionResponse,
)
from aiwire.rollouts.split import set_caller
from aiwire.server import openai_wire
from aiwire.server.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    respond,
)
from aiwire.server.auth import Principal
from aiwire.types import Usage, new_id

if TYPE_CHECKING:
    from aiwire.server.app import Gateway, _Outcome

log = logging.getLogger("aiwire.server")

IMAGES = "/v1/images/generations"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
#: OpenAI's limit for one audio file.
DEFAULT_MAX_AUDIO_BYTES = 25 * 1024 * 1024
#: Room for the form's other fields and part headers around the file.
FORM_OVERHEAD = 64 * 1024

Request = ImageRequest | TranscriptionRequest
Resp = TypeVar("Resp", ImageResponse, TranscriptionResponse)


class MediaRoutes:
    """The two handlers, bound to one gateway (its auth, admission, pricing and log)."""

    def __init__(self, gateway: Gateway, *, max_audio_bytes: int = DEFAULT_MAX_AUDIO_BYTES):
        self.gateway = gateway
        self.max_audio_bytes = max_audio_bytes
        self._unpriced: set[str] = set()

    # -- the endpoints --------------------------------------------------------------------

    async def images(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        started, request_id = time.perf_counter(), new_id("req_")
        try:
            principal = await gw.principal(scope)
            body = await read_body(scope, receive, gw.settings.max_body_bytes)
            request = openai_wire.parse_images(body)
            principal.authorize(request.model, IMAGES)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await gw._fail(send, openai_wire.error_body, _too_large(exc.limit), request_id)
            return
        except errors.AIWireError as exc:
            await gw._fail(send, openai_wire.error_body, exc, request_id)
            return
        prompt_tokens = math.ceil(len(request.prompt) / 3) + 1

        def max_cost(upstream: str, catalog: Catalog) -> float:
            return catalog.image_max_cost(
                upstream,
                images=request.count,
                prompt_tokens=prompt_tokens,
                size=request.size,
                quality=request.quality,
            )

        def cost(upstream: str, catalog: Catalog, resp: ImageResponse) -> float | None:
            return catalog.image_cost(
                upstream,
                images=len(resp.data),
                size=request.size,
                quality=request.quality,
                usage=resp.usage,
            )

        def usage(resp: ImageResponse) -> Usage | None:
            u = resp.usage
            return None if u is None else Usage.of(u.input_tokens, u.output_tokens)

        await self._serve(
            receive,
            send,
            principal,
            request,
            IMAGES,
            request_id,
            started,
            estimate=(prompt_tokens, 0),
            max_cost=max_cost,
            call=lambda: gw.router.images(request),
            render=lambda resp: (openai_wire.render_images(resp), b"application/json"),
            usage=usage,
            cost=cost,
        )

    async def transcriptions(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        started, request_id = time.perf_counter(), new_id("req_")
        try:
            principal = await gw.principal(scope)
            body = await read_body(scope, receive, self.max_audio_bytes + FORM_OVERHEAD)
            parts = multipart.parse(body, header(scope, b"content-type"))
            request = openai_wire.parse_transcription(parts)
            if len(request.file) > self.max_audio_bytes:
                raise _too_large(self.max_audio_bytes, "the audio file")
            principal.authorize(request.model, TRANSCRIPTIONS)
        except ClientGone:
            return
        except BodyTooLarge:
            too_large = _too_large(self.max_audio_bytes, "the audio file")
            await gw._fail(send, openai_wire.error_body, too_large, request_id)
            return
        except errors.AIWireError as exc:
            await gw._fail(send, openai_wire.error_body, exc, request_id)
            return
        seconds = duration_seconds(request.file)

        def max_cost(upstream: str, catalog: Catalog) -> float:
            return catalog.transcription_max_cost(upstream, seconds=seconds)

        def cost(upstream: str, catalog: Catalog, resp: TranscriptionResponse) -> float | None:
            return catalog.transcription_cost(upstream, seconds=resp.duration, usage=resp.usage)

        def usage(resp: TranscriptionResponse) -> Usage | None:
            u = resp.usage
            return None if u is None else Usage.of(u.input_tokens, u.output_tokens)

        await self._serve(
            receive,
            send,
            principal,
            request,
            TRANSCRIPTIONS,
            request_id,
            started,
            estimate=(math.ceil(len(request.prompt or "") / 3), 0),
            max_cost=max_cost,
            call=lambda: gw.router.transcribe(request),
            render=openai_wire.render_transcription,
            usage=usage,
            cost=cost,
        )

    # -- the shared path ------------------------------------------------------------------

    async def _serve(
        self,
        receive: Receive,
        send: Send,
        principal: Principal,
        request: Request,
        endpoint: str,
        request_id: str,
        started: float,
        *,
        estimate: tuple[int, int],
        max_cost: Callable[[str, Catalog], float],
        call: Callable[[], Awaitable[Resp]],
        render: Callable[[Resp], tuple[bytes, bytes]],
        usage: Callable[[Resp], Usage | None],
        cost: Callable[[str, Catalog, Resp], float | None],
    ) -> None:
        from aiwire.server.app import _attempts, _Outcome, _until_disconnect

        gw = self.gateway
        outcome = _Outcome(headers=[("x-request-id", request_id)])
        if not await self._admit(send, principal, request.model, outcome, estimate, max_cost):
            gw._log(request_id, principal, request, endpoint, outcome, started, None)
            return
        _attempts.set(outcome.attempts)
        set_caller(principal.key_id)  # sticky rollouts keep a key on its variant

        async def work() -> None:
            try:
                resp = await call()
            except errors.AIWireError as exc:
                outcome.finished = True
                outcome.status = await gw._fail(send, openai_wire.error_body, exc, outcome.headers)
                outcome.error = type(exc).__name__
                return
            outcome.deployment, outcome.provider = resp.deployment, resp.provider
            outcome.usage = usage(resp)
            outcome.cost = self._cost(resp.deployment, lambda m, c: cost(m, c, resp))
            body, content_type = render(resp)
            outcome.finished = True
            await respond(send, 200, body, content_type=content_type, headers=outcome.headers)

        gw.inflight += 1
        try:
            if not await _until_disconnect(work(), receive, outcome):
                outcome.status, outcome.error = 499, "client_disconnected"
        finally:
            gw.inflight -= 1
            await self._settle(outcome)
        gw._log(request_id, principal, request, endpoint, outcome, started, None)

    def _catalog(self) -> Catalog | None:
        pricing = self.gateway.pricing
        return pricing.catalog if isinstance(pricing, CatalogPricing) else None

    def _cost(self, deployment: str | None, price: Callable[[str, Catalog], float | None]) -> float:
        """What the answer cost by the catalog; 0 for a model it does not price (warned once)."""
        catalog = self._catalog()
        dep = self.gateway.router.deployment(deployment) if deployment else None
        if catalog is None or dep is None:
            return 0.0
        found = catalog.lookup(dep.model) is not None
        value = price(dep.model, catalog) if found else None
        if value is None and dep.model not in self._unpriced:
            self._unpriced.add(dep.model)
            log.warning(
                "no price for %r in the catalog (per image, per minute or by tokens): its spend "
                "is counted as $0; add it under catalog: in the config",
                dep.model,
            )
        return value or 0.0

    async def _admit(
        self,
        send: Send,
        principal: Principal,
        model: str,
        outcome: _Outcome,
        estimate: tuple[int, int],
        max_cost: Callable[[str, Catalog], float],
    ) -> bool:
        """Reserve the request under its key's limits and budgets: at most what its dearest
        deployment can charge. False (after answering 429) when refused."""
        gw = self.gateway
        if gw.admission is None:
            return True

        def dearest(_input: int, _output: int) -> float:
            catalog = self._catalog()
            if catalog is None:
                return 0.0
            prices = [
                max_cost(d.model, catalog)
                for d in gw.router.deployments(model)
                if catalog.lookup(d.model) is not None
            ]
            return max(prices, default=0.0)

        try:
            outcome.ticket = await gw.admission.admit(
                principal.record, tokens=lambda: estimate, max_cost=dearest
            )
        except Refused as exc:
            headers = [*outcome.headers, *exc.headers]
            outcome.status = await gw._fail(send, openai_wire.error_body, exc, headers)
            outcome.error = exc.code or type(exc).__name__
            return False
        if outcome.ticket is not None:
            outcome.headers += outcome.ticket.headers
        return True

    async def _settle(self, outcome: _Outcome) -> None:
        gw = self.gateway
        dep = gw.router.deployment(outcome.deployment) if outcome.deployment else None
        pricing = gw.pricing
        if dep is not None and isinstance(pricing, CatalogPricing):
            warning = pricing.note_use(dep.model)
            if warning is not None and gw.alerts is not None:
                await gw.alerts.fire("deprecated_model", dep.model, warning, {"model": dep.model})
        reached = dep is None and bool(outcome.attempts) and outcome.status in (200, 499)
        if reached and outcome.ticket is not None:  # reached a provider, ended without an answer
            outcome.cost = outcome.ticket.reserved_usd
        if gw.admission is None or outcome.ticket is None:
            return
        tokens = outcome.usage.total_tokens if outcome.usage is not None else None
        try:
            await gw.admission.settle(outcome.ticket, tokens, outcome.cost)
        except Exception:  # the answer is out; a counter hiccup must not fail the request
            log.exception("settling limits and budgets failed")


def _too_large(limit: int, what: str = "the request body") -> errors.BadRequestError:
    return errors.BadRequestError(
        f"{what} is larger than {limit} bytes", status=413, code="request_too_large"
    )


__all__ = ["DEFAULT_MAX_AUDIO_BYTES", "IMAGES", "TRANSCRIPTIONS", "MediaRoutes"]
