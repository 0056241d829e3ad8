"""Offline token counting: exact for OpenAI (against tiktoken's own definitions and OpenAI's
published counts), labelled estimates for the rest, and refusal of tokenizer data that does not
match OpenAI's hash."""

from __future__ import annotations

import base64
import logging
import math
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

from aiwire.tokens import (
    TokenizerDataError,
    count_chat,
    count_text,
    family_for,
    upper_bound_tokens,
)
from aiwire.tokens import encodings as enc_mod
from aiwire.tokens.images import ImageRule, image_size
from aiwire.types import ChatRequest

SAMPLES = [
    "tiktoken is great!",
    "antidisestablishmentarianism",
    "2 + 2 = 4",
    "お誕生日おめでとう",
    "def f(x):\n\treturn x**2  # squares\r\n\n\n   trailing   ",
    "Ünïcödé — emoji 🧪🚀, Ελληνικά, русский, العربية, हिन्दी, 中文标点。",
    "<|endoftext|> is plain text here, as are <|endofprompt|> and <|fim_prefix|>",
    "1234567890 3.14159 -42 1e10 0x1F",
    "I'm sure you'll see they've done it; WE'LL SEE.",
    "",
]

# OpenAI cookbook, "How to count tokens with tiktoken": messages whose prompt_tokens the API
# reported as 129 (gpt-3.5-turbo, gpt-4-0613, gpt-4) and 124 (gpt-4o, gpt-4o-mini).
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]
# Same notebook, tool section: 105 prompt tokens (gpt-3.5-turbo, gpt-4), 101 (gpt-4o, -mini).
COOKBOOK_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def chat(messages: list[dict[str, Any]], **kw: Any) -> ChatRequest:
    return ChatRequest(model="any", messages=messages, **kw)


@pytest.fixture(scope="module")
def reference() -> dict[str, tiktoken.Encoding]:
    """tiktoken's own definition of each encoding (pattern, special tokens) with the verified
    ranks substituted for the download it would make."""
    ranks = {
        name: enc_mod.parse_vocab((_data_dir() / enc_mod._VOCAB_FILE[name]).read_bytes())
        for name in ("o200k_base", "cl100k_base")
    }

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        name = "o200k_base" if "o200k" in url else "cl100k_base"
        assert expected_hash == enc_mod.EXPECTED_SHA256[name]
        return ranks[name]

    mp = pytest.MonkeyPatch()
    mp.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    try:
        return {
            "o200k_base": tiktoken.Encoding(**openai_public.o200k_base()),
            "cl100k_base": tiktoken.Encoding(**openai_public.cl100k_base()),
        }
    finally:
        mp.undo()


def _data_dir() -> Path:
    folder = enc_mod.shipped_data_dir()
    assert folder is not None, "quicktok-v1 (tokenizer data) must be installed"
    return folder


@pytest.fixture
def isolated_encodings() -> Iterator[None]:
    """Let a test empty the encoding cache; the verified encodings come back afterwards."""
    saved = dict(enc_mod._loaded)
    enc_mod.reset()
    yield
    enc_mod.reset()
    enc_mod._loaded.update(saved)


# --- exact OpenAI encodings ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_shipped_data_hashes_to_openais_published_sha256(name: str) -> None:
    ranks = enc_mod.parse_vocab((_data_dir() / enc_mod._VOCAB_FILE[name]).read_bytes())
    assert enc_mod.tiktoken_file_sha256(ranks) == enc_mod.EXPECTED_SHA256[name]
    # The pins are tiktoken's own, not copies that could drift.
    source = Path(openai_public.__file__).read_text()
    assert f'expected_hash="{enc_mod.EXPECTED_SHA256[name]}"' in source


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encoding_equals_tiktokens_definition(
    name: str, reference: dict[str, tiktoken.Encoding]
) -> None:
    ours, ref = enc_mod.get_encoding(name), reference[name]
    assert ours is not None
    assert ours._pat_str == ref._pat_str
    assert ours._special_tokens == ref._special_tokens
    assert ours.n_vocab == ref.n_vocab
    for text in SAMPLES:
        assert ours.encode_ordinary(text) == ref.encode_ordinary(text), text


def test_known_token_ids_from_openais_cookbook() -> None:
    o200k, cl100k = enc_mod.get_encoding("o200k_base"), enc_mod.get_encoding("cl100k_base")
    assert o200k is not None and cl100k is not None
    assert cl100k.encode_ordinary("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert o200k.encode_ordinary("tiktoken is great!") == [83, 8251, 2488, 382, 2212, 0]
    assert len(cl100k.encode_ordinary("お誕生日おめでとう")) == 9
    assert len(o200k.encode_ordinary("お誕生日おめでとう")) == 8


def test_loading_never_downloads(monkeypatch: pytest.MonkeyPatch, isolated_encodings: None) -> None:
    def no_network(*args: object, **kw: object) -> bytes:
        raise AssertionError("tiktoken tried to fetch a file")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    assert count_text("hello world", "gpt-4o").exact


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
        ("gpt-4o-mini-2024-07-18", 124),
    ],
)
def test_chat_count_matches_openais_published_prompt_tokens(model: str, expected: int) -> None:
    count = count_chat(chat(COOKBOOK_MESSAGES), model)
    assert count.tokens == expected
    assert count.exact


def test_chat_count_reproduces_reference_formula(reference: dict[str, tiktoken.Encoding]) -> None:
    messages = [
        {"role": "developer", "content": SAMPLES[5]},
        {"role": "user", "name": "ana", "content": SAMPLES[4]},
        {"role": "assistant", "content": SAMPLES[6]},
    ]
    ref = reference["o200k_base"]
    expected = 3 + sum(
        3 + sum(len(ref.encode_ordinary(v)) for v in m.values()) + ("name" in m) for m in messages
    )
    assert count_chat(chat(messages), "o3-2025-04-16") == count_chat(chat(messages), "gpt-5")
    got = count_chat(chat(messages), "gpt-5")
    assert (got.tokens, got.exact, got.method) == (expected, True, "o200k_base")


@pytest.mark.parametrize(("model", "expected"), [("gpt-4", 105), ("gpt-4o", 101)])
def test_tool_definitions_match_cookbook_but_are_labelled_estimates(
    model: str, expected: int
) -> None:
    count = count_chat(chat(COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS), model)
    assert count.tokens == expected
    assert not count.exact


def test_parts_that_openai_does_not_document_make_the_count_inexact() -> None:
    call = {"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}
    cases = [
        [{"role": "assistant", "content": None, "tool_calls": [call]}],
        [{"role": "tool", "tool_call_id": "c1", "content": "42"}],
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
    ]
    for messages in cases:
        assert not count_chat(chat(messages), "gpt-4o").exact
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    request = chat([{"role": "user", "content": "hi"}], response_format=schema)
    assert not count_chat(request, "gpt-4o").exact
    assert (
        count_chat(request, "gpt-4o").tokens
        > count_chat(chat([request.messages[0].model_dump()]), "gpt-4o").tokens
    )


def test_count_text_has_no_chat_framing() -> None:
    assert count_text("tiktoken is great!", "gpt-4o").tokens == 6
    assert count_text("tiktoken is great!", "text-embedding-3-small").method == "cl100k_base"
    assert count_text("", "gpt-4o").tokens == 0


# --- model families ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o-2024-08-06", "o200k_base", True),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base", True),
        ("openai/gpt-4.1-nano", "o200k_base", True),
        ("o4-mini-2025-04-16", "o200k_base", True),
        ("gpt-5.1", "o200k_base", True),
        ("gpt-4-0613", "cl100k_base", True),
        ("gpt-35-turbo", "cl100k_base", True),
        ("text-embedding-3-large", "cl100k_base", True),
        ("claude-sonnet-4-5-20250929", "o200k_base", False),
        ("gemini-2.5-flash", "o200k_base", False),
        ("llama-3.1-8b-instruct", "o200k_base", False),
    ],
)
def test_family_resolution(model: str, encoding: str, exact: bool) -> None:
    family = family_for(model)
    assert (family.encoding, family.exact) == (encoding, exact)


def test_gpt_4o_is_not_mistaken_for_gpt_4() -> None:
    assert family_for("gpt-4o").encoding == "o200k_base"
    assert family_for("gpt-4").encoding == "cl100k_base"
    assert family_for("gpt-4o-mini").image.base == 2833


# --- estimators ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider"),
    [("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-pro", "gemini"), ("mistral-large", "other")],
)
def test_non_openai_models_are_estimates_and_say_so(model: str, provider: str) -> None:
    request = chat(COOKBOOK_MESSAGES)
    count = count_chat(request, model)
    assert not count.exact
    assert count.method.startswith("estimate:") and provider in count.method
    assert 0 < count.tokens <= upper_bound_tokens(request, model)
    assert not count_text("hello", model).exact


def test_anthropic_estimate_is_o200k_times_its_factor_plus_tool_prompt() -> None:
    base = count_chat(chat(COOKBOOK_MESSAGES), "gpt-4o").tokens
    framing = 3 * len(COOKBOOK_MESSAGES) + 3 + len(COOKBOOK_MESSAGES)  # + 1 per name
    text = base - framing
    claude = count_chat(chat(COOKBOOK_MESSAGES), "claude-sonnet-4-5").tokens
    assert claude == math.ceil(text * 1.2) + framing
    with_tools = count_chat(chat(COOKBOOK_MESSAGES, tools=COOKBOOK_TOOLS), "claude-haiku-4-5")
    assert with_tools.tokens > claude + 346


# --- the cheap upper bound -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["gpt-4o", "gpt-4", "gpt-4.1-mini", "claude-opus-4-5", "gemini-2.5-flash", "x"]
)
def test_upper_bound_is_never_below_the_count(model: str) -> None:
    png = _data_url(_png(1024, 1024), "image/png")
    requests = [
        chat(COOKBOOK_MESSAGES),
        chat(COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS),
        chat([{"role": "user", "name": "ülla", "content": s} for s in SAMPLES]),
        chat([{"role": "user", "content": "🧪" * 500}]),
        chat(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": png, "detail": "high"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    ],
                }
            ]
        ),
    ]
    for request in requests:
        bound = upper_bound_tokens(request, model)
        assert count_chat(request, model).tokens <= bound
        assert bound <= upper_bound_tokens(request)  # no family: the loosest image bound


def test_upper_bound_tracks_bytes() -> None:
    text = "x" * 10_000
    bound = upper_bound_tokens(chat([{"role": "user", "content": text}]))
    assert 10_000 <= bound < 10_050
    assert count_chat(chat([{"role": "user", "content": text}]), "gpt-4o").tokens < bound


# --- images ---------------------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9
    exif = b"\xff\xe1" + struct.pack(">H", 60_002) + b"\0" * 60_000  # pushes SOF past 64 KiB
    exif2 = exif
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + exif + exif2 + sof + b"\xff\xd9"


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_image_sizes_are_read_from_inline_images() -> None:
    assert image_size(_data_url(_png(1024, 768), "image/png")) == (1024, 768)
    assert image_size(_data_url(_jpeg(4000, 3000), "image/jpeg")) == (4000, 3000)
    gif = b"GIF89a" + struct.pack("<HH", 320, 200) + b"\0" * 8
    assert image_size(_data_url(gif, "image/gif")) == (320, 200)
    webp = (
        b"RIFF\0\0\0\0WEBPVP8X"
        + b"\0" * 8
        + (799).to_bytes(3, "little")
        + (599).to_bytes(3, "little")
    )
    assert image_size(_data_url(webp, "image/webp")) == (800, 600)
    assert image_size("https://example.test/cat.png") is None
    assert image_size("data:image/png;base64,!!!!") is None


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # OpenAI's worked examples
        ((2048, 4096), "high", 1105),
        ((4096, 8192), "low", 85),
        ((1024, 1024), None, 765),
        (None, "high", 85 + 8 * 170),  # unknown size: the most an image can cost
    ],
)
def test_openai_tile_formula(size: tuple[int, int] | None, detail: str | None, tokens: int) -> None:
    assert ImageRule("tile", base=85, per_tile=170).tokens(size, detail) == tokens


@pytest.mark.parametrize(("size", "patches"), [((1024, 1024), 1024), ((1800, 2400), 1452)])
def test_openai_patch_formula(size: tuple[int, int], patches: int) -> None:
    assert ImageRule("patch", multiplier=1).tokens(size, "high") == patches
    assert ImageRule("patch", multiplier=1.62).tokens(size, "high") == math.ceil(patches * 1.62)


def test_image_in_chat_counts_by_detail_and_is_exact_only_when_size_is_known() -> None:
    def request(url: str, detail: str | None) -> ChatRequest:
        part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
        return chat([{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}])

    text_only = count_chat(chat([{"role": "user", "content": "hi"}]), "gpt-4o").tokens
    png = _data_url(_png(1024, 1024), "image/png")
    high = count_chat(request(png, "high"), "gpt-4o")
    assert (high.tokens - text_only, high.exact) == (765, True)
    low = count_chat(request("https://x.test/a.png", "low"), "gpt-4o")
    assert (low.tokens - text_only, low.exact) == (85, True)
    unknown = count_chat(request("https://x.test/a.png", "auto"), "gpt-4o")
    assert (unknown.tokens - text_only, unknown.exact) == (85 + 8 * 170, False)
    mini = count_chat(request(png, "high"), "gpt-4o-mini")
    assert mini.tokens - text_only == 2833 + 4 * 5667
    assert not count_chat(request(png, "high"), "gpt-4.1-mini").exact  # patch rule: estimated


# --- refusing bad data, degrading without it ------------------------------------------------------


def _corrupt_copy(tmp_path: Path, name: str) -> Path:
    """A copy of the shipped data in which one long token differs by one bit (same layout)."""
    for f in enc_mod._VOCAB_FILE.values():
        shutil.copy(_data_dir() / f, tmp_path / f)
    path = tmp_path / enc_mod._VOCAB_FILE[name]
    raw = bytearray(path.read_bytes())
    off = 4  # u32 count, then per token: u16 length, bytes, u32 rank
    while (length := raw[off] | raw[off + 1] << 8) < 12:
        off += 2 + length + 4
    raw[off + 2 + length // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    return tmp_path


def test_corrupt_data_is_refused(tmp_path: Path) -> None:
    folder = _corrupt_copy(tmp_path, "o200k_base")
    with pytest.raises(TokenizerDataError, match="does not match OpenAI's o200k_base"):
        enc_mod.load_encoding("o200k_base", folder)


def test_truncated_or_missing_data_is_refused(tmp_path: Path) -> None:
    raw = (_data_dir() / "cl100k.vocab").read_bytes()
    (tmp_path / "cl100k.vocab").write_bytes(raw[:-3])
    with pytest.raises(TokenizerDataError, match="truncated"):
        enc_mod.load_encoding("cl100k_base", tmp_path)
    with pytest.raises(TokenizerDataError, match="cannot read"):
        enc_mod.load_encoding("o200k_base", tmp_path)


def test_bad_data_degrades_to_an_estimate_with_one_warning(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    isolated_encodings: None,
) -> None:
    folder = _corrupt_copy(tmp_path, "o200k_base")
    monkeypatch.setattr(enc_mod, "shipped_data_dir", lambda: folder)
    with caplog.at_level(logging.WARNING, logger="aiwire.tokens"):
        first = count_text("hello world, hello tokens", "gpt-4o")
        again = count_chat(chat(COOKBOOK_MESSAGES), "gpt-4o")
    assert not first.exact and not again.exact
    assert "unavailable" in first.method
    assert first.tokens == math.ceil(len("hello world, hello tokens") / 3)
    assert again.tokens <= upper_bound_tokens(chat(COOKBOOK_MESSAGES))
    warnings = [r for r in caplog.records if "o200k_base" in r.getMessage()]
    assert len(warnings) == 1
    assert count_chat(chat(COOKBOOK_MESSAGES), "gpt-4").exact  # cl100k data is intact


def test_missing_package_degrades(
    monkeypatch: pytest.MonkeyPatch, isolated_encodings: None
) -> None:
    monkeypatch.setattr(enc_mod, "shipped_data_dir", lambda: None)
    count = count_text("hello", "gpt-4")
    assert (count.tokens, count.exact) == (2, False)
