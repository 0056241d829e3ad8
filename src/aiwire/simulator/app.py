"""The simulator ASGI app: OpenAI (/v1, /openai/deployments), Anthropic (/v1/messages),
Gemini (/v1beta/models, /v1/models/…:method; Vertex AI's /v1/projects/…/models/…:method),
Bedrock (/model/{modelId}/converse…) and TGI (/generate, /generate_stream) on one server."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aiwire.simulator import anthropic_api, bedrock_api, gemini_api, openai_api, tgi_api, vertex_api
from aiwire.simulator.batch_api import ROUTES as BATCH_ROUTES
from aiwire.simulator.config import SimulatorConfig
from aiwire.simulator.gate import SimState
from aiwire.simulator.media_api import ROUTES as MEDIA_ROUTES
from aiwire.simulator.wire import RAW_SEND_KEY

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class SimulatorApp(Starlette):
    """Starlette, plus the server's own ``send`` in the scope so a fault can drop the
    connection the way a failing upstream would."""

    @property
    def sim(self) -> SimState:
        state: SimState = self.state.sim
        return state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def _flavour(request: Request) -> str:
    """Which protocol a shared ``/v1/models`` route is asked in."""
    if request.headers.get("x-goog-api-key") or request.query_params.get("key"):
        return "gemini"
    if request.headers.get("anthropic-version"):
        return "anthropic"
    return "openai"


async def v1_models(request: Request) -> Response:
    flavour = _flavour(request)
    if flavour == "gemini":
        return await gemini_api.gemini_models(request)
    if flavour == "anthropic":
        return await anthropic_api.list_models(request)
    return await openai_api.list_models(request)


async def v1_models_rest(request: Request) -> Response:
    rest = str(request.path_params["rest"])
    if ":" in rest or _flavour(request) == "gemini":
        return await gemini_api.gemini_models(request)
    if _flavour(request) == "anthropic":
        return await anthropic_api.retrieve_model(request, rest)
    if request.method != "GET":
        return openai_api.openai_not_found(request)
    return await openai_api.retrieve_model(request, rest)


async def not_found(request: Request) -> Response:
    path = request.url.path
    if path.startswith("/v1beta"):
        return gemini_api.gemini_not_found(request)
    if path.startswith("/v1/messages") or request.headers.get("anthropic-version"):
        return anthropic_api.anthropic_not_found(request)
    return openai_api.openai_not_found(request)


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    routes = [
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/embeddings", openai_api.embeddings, methods=["POST"]),
        Route(
            "/openai/deployments/{deployment}/chat/completions",
            openai_api.azure_chat_completions,
            methods=["POST"],
        ),
        Route(
            "/openai/deployments/{deployment}/embeddings",
            openai_api.azure_embeddings,
            methods=["POST"],
        ),
        Route("/v1/messages", anthropic_api.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic_api.count_tokens, methods=["POST"]),
        Route("/v1/models", v1_models, methods=["GET"]),
        Route("/v1/models/{rest:path}", v1_models_rest, methods=["GET", "POST"]),
        Route("/v1beta/models", gemini_api.gemini_models, methods=["GET"]),
        Route("/v1beta/models/{rest:path}", gemini_api.gemini_models, methods=["GET", "POST"]),
        Route(vertex_api.MODELS_PATH, vertex_api.models, methods=["GET", "POST"]),
        Route("/token", vertex_api.token, methods=["POST"]),
        Route("/model/{model_id:path}/converse", bedrock_api.converse, methods=["POST"]),
        Route(
            "/model/{model_id:path}/converse-stream", bedrock_api.converse_stream, methods=["POST"]
        ),
        Route("/model/{model_id:path}/invoke", bedrock_api.invoke, methods=["POST"]),
        Route("/model/{rest:path}", bedrock_api.not_found, methods=_METHODS),
        Route("/generate", tgi_api.generate_text, methods=["POST"]),
        Route("/generate_stream", tgi_api.generate_stream, methods=["POST"]),
        *BATCH_ROUTES,  # OpenAI Batch + Anthropic Message Batches (before the catch-all)
        *MEDIA_ROUTES,  # images/generations, audio/transcriptions (OpenAI and Azure)
        Route("/{path:path}", not_found, methods=_METHODS),
    ]
    app = SimulatorApp(routes=routes)
    app.state.sim = SimState(config or SimulatorConfig())
    return app
