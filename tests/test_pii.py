"""The PII guardrail: detection quality on the labelled corpus, masking every text a provider
sees, blocking without leaking values, and restoring values in whole, streamed and raw answers."""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from aiwire import errors
from aiwire.guardrails import PIIGuard, PIIPolicy, RegexDetector, Vault
from aiwire.guardrails.detectors import BUILTIN, iban_ok, luhn_ok, verhoeff_ok
from aiwire.guardrails.pii import CustomPattern, PresidioOptions
from aiwire.guardrails.presidio import PresidioDetector, load_analyzer, with_presidio
from aiwire.server import openai_wire
from aiwire.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    Message,
    RawChatResponse,
    RawChunk,
    StreamAccumulator,
    ToolCall,
    ToolCallDelta,
)

CORPUS = Path(__file__).parent / "data" / "pii" / "corpus.jsonl"


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]


# --- detection quality ------------------------------------------------------------------------


def test_corpus_is_large_labelled_and_has_hard_negatives() -> None:
    samples = load_corpus()
    assert len(samples) >= 200
    negatives = [s for s in samples if not s["expected"]]
    assert len(negatives) >= 60
    kinds = Counter(e["kind"] for s in samples for e in s["expected"])
    assert set(kinds) == set(BUILTIN)
    for s in samples:
        for e in s["expected"]:
            assert e["value"] in s["text"]


def _iban_mod97(iban: str) -> int:
    """An independent mod-97 (piecewise, as the standard describes) to check the labels."""
    moved = iban[4:] + iban[:4]
    remainder = 0
    for ch in moved:
        for digit in str(int(ch, 36)):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder


def test_corpus_labels_are_valid_values() -> None:
    """Every labelled card and IBAN really passes its checksum (checked independently)."""
    for s in load_corpus():
        for e in s["expected"]:
            compact = e["value"].replace(" ", "").replace("-", "")
            if e["kind"] == "credit_card":
                digits = [int(c) for c in reversed(compact)]
                odd = sum(digits[0::2])
                even = sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
                assert (odd + even) % 10 == 0, "corpus card fails Luhn"
            if e["kind"] == "iban":
                assert _iban_mod97(compact) == 1, "corpus IBAN fails mod-97"


def test_corpus_recall_and_precision(capsys: pytest.CaptureFixture[str]) -> None:
    detector = RegexDetector()
    tp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    misses: list[str] = []
    for s in load_corpus():
        expected = {(e["kind"], e["value"]) for e in s["expected"]}
        found = {(f.kind, f.value) for f in detector.find(s["text"])}
        for kind, _ in expected & found:
            tp[kind] += 1
        for kind, _ in expected - found:
            fn[kind] += 1
            misses.append(f"missed {kind}: {s['text']}")
        for kind, _ in found - expected:
            fp[kind] += 1
    lines = [f"{'kind':<12} {'recall':>7} {'precision':>9}  (tp/fn/fp)"]
    for kind in BUILTIN:
        recall = tp[kind] / max(1, tp[kind] + fn[kind])
        precision = tp[kind] / max(1, tp[kind] + fp[kind])
        lines.append(
            f"{kind:<12} {recall:7.3f} {precision:9.3f}  ({tp[kind]}/{fn[kind]}/{fp[kind]})"
        )
    total_tp, total_fn, total_fp = sum(tp.values()), sum(fn.values()), sum(fp.values())
    recall = total_tp / (total_tp + total_fn)
    precision = total_tp / (total_tp + total_fp)
    lines.append(f"{'all':<12} {recall:7.3f} {precision:9.3f}  ({total_tp}/{total_fn}/{total_fp})")
    with capsys.disabled():
        print("\nPII corpus:", len(load_corpus()), "samples\n" + "\n".join(lines))
    assert recall >= 0.98, misses
    for kind in BUILTIN:
        assert tp[kind] / max(1, tp[kind] + fn[kind]) >= 0.9, (kind, misses)


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert verhoeff_ok("2363") and not verhoeff_ok("2364")  # Verhoeff's worked example: 236 → 3
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # one character short for Germany


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("pay 4111 1111 1111 1111 123 now", "credit_card", "4111 1111 1111 1111"),  # CVV after
        ("IBAN DE89 3704 0044 0532 0130 00 EUR", "iban", "DE89 3704 0044 0532 0130 00"),
        ("from [2001:db8::1]:443", "ip_address", "2001:db8::1"),
        ("ssn: 536228173", "us_ssn", "536228173"),
        ("+44 (0)20 7946 0958", "phone", "+44 (0)20 7946 0958"),
        ("mail a.b@example.com.", "email", "a.b@example.com"),
    ],
)
def test_spans(text: str, kind: str, value: str) -> None:
    assert [(f.kind, f.value) for f in RegexDetector().find(text)] == [(kind, value)]


def test_overlaps_and_kinds_filter() -> None:
    text = "text 4155552671@sms.example.com or call +1 415 555 2671"
    assert [f.kind for f in RegexDetector().find(text)] == ["email", "phone"]
    assert [f.value for f in RegexDetector(["phone"]).find(text)] == ["+1 415 555 2671"]
    # A custom pattern wins where it overlaps a built-in kind.
    custom = RegexDetector(custom=[("order_ref", re.compile(r"ORD \d{3}-\d{3}-\d{4}"))])
    found = custom.find("see ORD 212-555-0187, call 212-555-0188")
    assert [(f.kind, f.value) for f in found] == [
        ("order_ref", "ORD 212-555-0187"),
        ("phone", "212-555-0188"),
    ]


def test_finding_repr_hides_value() -> None:
    (finding,) = RegexDetector().find("card 4111111111111111")
    assert "4111" not in repr(finding)


# --- policy -----------------------------------------------------------------------------------


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="unknown PII kinds"):
        PIIPolicy(kinds=["emial"])
    with pytest.raises(ValueError, match="clash"):
        PIIPolicy(custom=[CustomPattern(name="email", pattern="x")])
    with pytest.raises(ValueError, match="valid regular expression"):
        CustomPattern(name="bad", pattern="(")
    with pytest.raises(ValueError, match="empty string"):
        CustomPattern(name="empty", pattern="a*")
    with pytest.raises(ValueError):
        CustomPattern(name="Has Space", pattern="x")
    policy = PIIPolicy.model_validate({"action": "mask", "kinds": ["email", "national_id"]})
    assert policy.builtin_kinds() == [
        "email",
        "us_ssn",
        "uk_nino",
        "es_dni",
        "ca_sin",
        "in_aadhaar",
    ]
    assert PIIPolicy(engine="presidio", kinds=["person"]).kinds == ["person"]


# --- masking ----------------------------------------------------------------------------------

EMAIL, EMAIL2, PHONE = "ann@example.com", "bob@example.org", "+44 20 7946 0958"


def rich_request() -> ChatRequest:
    """Personal data in every place a provider reads text."""
    return ChatRequest.model_validate(
        {
            "model": "m",
            "user": EMAIL,
            "metadata": {"customer": EMAIL2, "tier": "gold"},
            "messages": [
                {"role": "system", "content": f"The account owner is {EMAIL}."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"Call me on {PHONE} or mail {EMAIL2}."},
                        {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "charge",
                                "arguments": json.dumps(
                                    {"card": "4111 1111 1111 1111", "email": EMAIL, "n": 3}
                                ),
                            },
                        }
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "call_1",
                    "content": f"charged; receipt to {EMAIL}",
                },
            ],
        }
    )


def test_mask_covers_every_text_and_keeps_placeholders_stable() -> None:
    request = rich_request()
    before = request.model_dump()
    red = PIIGuard(PIIPolicy(action="mask")).apply(request)
    assert red is not None
    assert request.model_dump() == before  # the client's request is not changed
    masked = red.request
    dumped = masked.model_dump_json()
    for value in (EMAIL, EMAIL2, PHONE, "4111 1111 1111 1111"):
        assert value not in dumped
    assert masked.user == "<EMAIL_1>"
    assert masked.model_extra == {"metadata": {"customer": "<EMAIL_2>", "tier": "gold"}}
    assert masked.messages[0].content == "The account owner is <EMAIL_1>."
    assert masked.messages[1].text == "Call me on <PHONE_1> or mail <EMAIL_2>."
    assert masked.messages[1].parts[1].type == "image_url"
    args = json.loads(masked.messages[2].tool_calls[0].function.arguments)  # type: ignore[index]
    assert args == {"card": "<CREDIT_CARD_1>", "email": "<EMAIL_1>", "n": 3}
    assert masked.messages[3].content == "charged; receipt to <EMAIL_1>"
    assert red.counts == {"email": 6, "phone": 1, "credit_card": 1}
    assert red.vault is not None and len(red.vault) == 4
    assert EMAIL not in repr(red.vault) and EMAIL not in repr(red)


def test_mask_skips_placeholder_numbers_the_client_already_wrote() -> None:
    request = ChatRequest(
        model="m",
        messages=[Message(role="user", content=f"Template: dear <EMAIL_1>. Real: {EMAIL}")],
    )
    red = PIIGuard(PIIPolicy(action="mask")).apply(request)
    assert red is not None and red.vault is not None
    assert red.request.messages[0].content == "Template: dear <EMAIL_1>. Real: <EMAIL_2>"
    # The client's literal placeholder is not swapped for a value on the way back.
    assert red.vault.restore_text("<EMAIL_1> and <EMAIL_2>") == f"<EMAIL_1> and {EMAIL}"


def test_integer_card_in_tool_arguments_is_masked() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "function": {"name": "pay", "arguments": '{"card": 4111111111111111}'},
                        }
                    ],
                }
            ],
        }
    )
    red = PIIGuard(PIIPolicy(action="mask")).apply(request)
    assert red is not None
    arguments = red.request.messages[0].tool_calls[0].function.arguments  # type: ignore[index]
    assert json.loads(arguments) == {"card": "<CREDIT_CARD_1>"}


def test_off_and_clean_requests_cost_nothing() -> None:
    request = rich_request()
    assert PIIGuard(PIIPolicy(action="off")).apply(request) is None
    clean = ChatRequest(model="m", messages=[Message(role="user", content="Summarise Q3 sales.")])
    assert PIIGuard(PIIPolicy(action="mask")).apply(clean) is None
    assert PIIGuard(PIIPolicy(action="block")).apply(clean) is None


def test_kinds_and_custom_patterns() -> None:
    policy = PIIPolicy(
        action="mask",
        kinds=["phone"],
        custom=[CustomPattern(name="employee_id", pattern=r"\bEMP-\d{6}\b")],
    )
    request = ChatRequest(
        model="m", messages=[Message(role="user", content=f"EMP-004211 ({EMAIL}) on {PHONE}")]
    )
    red = PIIGuard(policy).apply(request)
    assert red is not None
    assert red.request.messages[0].content == f"<EMPLOYEE_ID_1> ({EMAIL}) on <PHONE_1>"


def test_restore_disabled_gives_no_vault() -> None:
    red = PIIGuard(PIIPolicy(action="mask", restore=False)).apply(rich_request())
    assert red is not None and red.vault is None


# --- blocking ---------------------------------------------------------------------------------


def test_block_names_kinds_and_place_never_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.BadRequestError) as info:
        PIIGuard(PIIPolicy(action="block")).apply(rich_request())
    exc = info.value
    assert exc.status == 400 and exc.code == "pii_detected"
    assert "credit_card" in exc.message and "email" in exc.message and "phone" in exc.message
    assert exc.param == "messages[0].content"
    status, body, _ = openai_wire.error_body(exc)
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "pii_detected"
    rendered = [exc.message, str(exc), repr(exc), body.decode(), caplog.text]
    for value in (EMAIL, EMAIL2, PHONE, "4111", "7946"):
        for text in rendered:
            assert value not in text


# --- restoring --------------------------------------------------------------------------------


def masked_pair() -> tuple[Vault, str]:
    """A vault, and an answer text using every one of its placeholders."""
    request = ChatRequest(
        model="m",
        messages=[
            Message(role="user", content=f"{EMAIL}, {EMAIL2}, {PHONE}, DE89370400440532013000")
        ],
    )
    red = PIIGuard(PIIPolicy(action="mask")).apply(request)
    assert red is not None and red.vault is not None
    return (
        red.vault,
        "Mail <EMAIL_1> and <EMAIL_2>, call <PHONE_1>; pay <IBAN_1>. <UNKNOWN_9> stays.",
    )


EXPECTED = (
    f"Mail {EMAIL} and {EMAIL2}, call {PHONE}; pay DE89370400440532013000. <UNKNOWN_9> stays."
)


def test_mask_then_restore_gives_back_every_corpus_text() -> None:
    guard = PIIGuard(PIIPolicy(action="mask"))
    masked_any = 0
    for s in load_corpus():
        request = ChatRequest(model="m", messages=[Message(role="user", content=s["text"])])
        red = guard.apply(request)
        if red is None:
            continue
        masked_any += 1
        masked = red.request.messages[0].content
        assert isinstance(masked, str)
        for e in s["expected"]:
            assert e["value"] not in masked
        assert red.vault is not None and red.vault.restore_text(masked) == s["text"]
    assert masked_any >= 150


def test_restore_whole_response_leaves_original_untouched() -> None:
    vault, text = masked_pair()
    call = ToolCall(id="c", function=FunctionCall(name="send", arguments='{"to": "<EMAIL_1>"}'))
    resp = ChatResponse(
        model="m",
        choices=[
            Choice(message=Message(role="assistant", content=text)),
            Choice(index=1, message=Message(role="assistant", tool_calls=[call])),
        ],
    )
    restored = vault.restore(resp)
    assert restored.choices[0].message.content == EXPECTED
    assert json.loads(restored.choices[1].message.tool_calls[0].function.arguments) == {  # type: ignore[index]
        "to": EMAIL
    }
    assert resp.choices[0].message.content == text  # a cached masked answer stays masked


def test_restore_raw_bytes_in_both_escapings() -> None:
    vault, text = masked_pair()
    body = orjson.dumps(
        {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    )
    go_style = body.replace(b"<", b"\\u003c").replace(b">", b"\\u003e")  # Go's encoding/json
    for raw in (body, go_style):
        out = vault.restore(RawChatResponse(body=raw, usage=None))
        assert orjson.loads(out.body)["choices"][0]["message"]["content"] == EXPECTED
    assert vault.restore_raw(b'{"choices":[]}') == b'{"choices":[]}'


def test_restore_values_that_need_json_escaping() -> None:
    policy = PIIPolicy(action="mask", custom=[CustomPattern(name="quote", pattern=r'Q"\\\w+')])
    request = ChatRequest(model="m", messages=[Message(role="user", content='id Q"\\abc here')])
    red = PIIGuard(policy).apply(request)
    assert red is not None and red.vault is not None
    assert red.request.messages[0].content == "id <QUOTE_1> here"
    args = '{"id": "<QUOTE_1>"}'
    assert json.loads(red.vault.restore_json_text(args)) == {"id": 'Q"\\abc'}
    body = orjson.dumps(
        {
            "choices": [
                {
                    "message": {
                        "content": "<QUOTE_1>",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": args}}],
                    }
                }
            ]
        }
    )
    message = orjson.loads(red.vault.restore_raw(body))["choices"][0]["message"]
    assert message["content"] == 'Q"\\abc'
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"id": 'Q"\\abc'}


def _text_chunk(text: str | None, finish: bool = False, index: int = 0) -> ChatChunk:
    return ChatChunk(
        id="c",
        model="m",
        choices=[
            ChunkChoice(
                index=index, delta=Delta(content=text), finish_reason="stop" if finish else None
            )
        ],
    )


def _raw_text_chunk(text: str | None, finish: bool = False) -> RawChunk:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": "stop" if finish else None}
    return RawChunk(data=orjson.dumps({"id": "c", "choices": [choice]}))


def _pieces(text: str, cuts: tuple[int, ...]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def test_stream_restore_at_every_split_point() -> None:
    vault, text = masked_pair()
    for cut in range(1, len(text)):
        for raw in (False, True):
            restorer = vault.stream()
            out = []
            for piece in _pieces(text, (cut,)):
                if raw:
                    chunk = restorer(_raw_text_chunk(piece))
                    out.append(orjson.loads(chunk.data)["choices"][0]["delta"]["content"])
                else:
                    out.append(restorer(_text_chunk(piece)).text)
            last = restorer(_raw_text_chunk(None, True) if raw else _text_chunk(None, True))
            tail = (
                orjson.loads(last.data)["choices"][0]["delta"]["content"]  # type: ignore[union-attr]
                if raw
                else last.text  # type: ignore[union-attr]
            )
            assert "".join(out) + (tail or "") == EXPECTED, (cut, raw)


def test_stream_restore_character_by_character_holds_only_placeholder_prefixes() -> None:
    vault, text = masked_pair()
    restorer = vault.stream()
    out = ""
    for k in range(1, len(text) + 1):
        out += restorer(_text_chunk(text[k - 1])).text
        # What went out is the restored input minus a held tail, and the tail is never more
        # than the start of a placeholder ("<", "<EM", ... "<EMAIL_1").
        held = [h for h in range(len("<EMAIL_1>")) if vault.restore_text(text[: k - h]) == out]
        assert held, k
        assert held[0] == 0 or vault.is_partial(text[k - held[0] : k])
    out += restorer(_text_chunk(None, True)).text
    assert out == EXPECTED


def test_stream_text_that_only_looks_like_a_placeholder_start_is_released() -> None:
    vault, _ = masked_pair()
    restorer = vault.stream()
    first = restorer(_text_chunk("a <EM"))
    assert first.text == "a "
    assert restorer(_text_chunk("PHASIS> b")).text == "<EMPHASIS> b"
    restorer(_text_chunk("x <PHO"))
    assert restorer(_text_chunk(None, True)).text == "<PHO"  # finish releases what was held
    restorer(_text_chunk("<EMA"))
    assert restorer.leftover() == "<EMA"


def test_stream_passthrough_is_free_when_nothing_to_restore() -> None:
    vault, _ = masked_pair()
    restorer = vault.stream()
    chunk = _text_chunk("plain text")
    raw = _raw_text_chunk("plain text")
    assert restorer(chunk) is chunk and restorer(raw) is raw


def test_stream_tool_call_arguments_and_choices_are_independent() -> None:
    vault, _ = masked_pair()
    restorer = vault.stream()
    acc = StreamAccumulator()

    def args_chunk(args: str | None, index: int, finish: bool = False) -> ChatChunk:
        calls = (
            [ToolCallDelta(index=0, function=FunctionCallDelta(arguments=args))]
            if args is not None
            else None
        )
        return ChatChunk(
            id="c",
            model="m",
            choices=[
                ChunkChoice(
                    index=index,
                    delta=Delta(tool_calls=calls),
                    finish_reason="tool_calls" if finish else None,
                )
            ],
        )

    for chunk in (
        args_chunk('{"to": "<EMA', 0),
        _text_chunk("Hi <PHO", index=1),
        args_chunk('IL_2>", "cc": "<EMAIL', 0),
        _text_chunk("NE_1>!", index=1),
        args_chunk("_1", 0),
        args_chunk(None, 0, finish=True),  # the held "_1" tail... is released with the finish
        _text_chunk(None, True, index=1),
    ):
        acc.add(restorer(chunk))
    resp = acc.response()
    assert resp.choices[1].message.content == f"Hi {PHONE}!"
    args = resp.choices[0].message.tool_calls[0].function.arguments  # type: ignore[index]
    assert args == '{"to": "' + EMAIL2 + '", "cc": "<EMAIL_1'


def test_raw_stream_tool_arguments_split() -> None:
    vault, _ = masked_pair()
    restorer = vault.stream()
    pieces = ['{"to": "<EM', 'AIL_1>"}']
    out = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        choice = {
            "index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
            "finish_reason": "tool_calls" if last else None,
        }
        chunk = restorer(RawChunk(data=orjson.dumps({"choices": [choice]})))
        delta = orjson.loads(chunk.data)["choices"][0]["delta"]
        out.append(delta["tool_calls"][0]["function"]["arguments"])
    assert json.loads("".join(out)) == {"to": EMAIL}


# --- speed ------------------------------------------------------------------------------------


def _per_call_us(guard: PIIGuard, request: ChatRequest, rounds: int) -> float:
    guard.apply(request)  # warm up
    start = time.perf_counter()
    for _ in range(rounds):
        guard.apply(request)
    return (time.perf_counter() - start) / rounds * 1e6


def test_speed_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, printed, and bounded loosely (a shared 2-core machine): the no-PII path must
    stay well under a millisecond for 1 KB."""
    prose = (
        "The quarterly review covers revenue, churn and the hiring plan for the next two "
        "quarters; the team agreed to revisit pricing once the survey results are in. "
    )
    numbers = (
        "On 2024-03-15 revenue reached $1,234,567 (up 12.5%), version 2.4.1 shipped to "
        "3,200 users and order 98765-4321 left at 14:30. "
    )
    pii = f" Contact {EMAIL} or {PHONE}; card 4111 1111 1111 1111. "
    guard = PIIGuard(PIIPolicy(action="mask"))
    results = {}
    for size in (1_000, 20_000):
        clean = (prose * (size // len(prose) + 1))[:size]
        counted = ((prose + numbers) * (size // len(prose + numbers) + 1))[:size]
        dirty = clean[: size - len(pii)] + pii
        for label, text in (("no PII", clean), ("numbers", counted), ("with PII", dirty)):
            request = ChatRequest(model="m", messages=[Message(role="user", content=text)])
            results[(size, label)] = _per_call_us(guard, request, 200 if size < 10_000 else 30)
    with capsys.disabled():
        print("\nPII guard (mask), µs per request:")
        for (size, label), us in results.items():
            print(f"  {size // 1000:>2} KB {label:<9} {us:9.1f}")
    assert results[(1_000, "no PII")] < 500
    assert results[(20_000, "no PII")] < 5_000
    assert results[(20_000, "numbers")] < 50_000


# --- Presidio (optional) ----------------------------------------------------------------------


class _Result:
    def __init__(self, entity_type: str, start: int, end: int) -> None:
        self.entity_type, self.start, self.end, self.score = entity_type, start, end, 0.9


class _FakeAnalyzer:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def analyze(self, text: str, language: str, **kwargs: Any) -> list[_Result]:
        self.calls.append({"language": language, **kwargs})
        out = []
        if (i := text.find("Ada Lovelace")) >= 0:
            out.append(_Result("PERSON", i, i + len("Ada Lovelace")))
        if (i := text.find(EMAIL)) >= 0:
            out.append(_Result("EMAIL_ADDRESS", i, i + len(EMAIL)))
        return out


def test_presidio_findings_merge_with_builtin_ones() -> None:
    analyzer = _FakeAnalyzer()
    policy = PIIPolicy(action="mask", engine="presidio", kinds=["email", "person"])
    detector = with_presidio(RegexDetector(policy.builtin_kinds()), policy, lambda _o: analyzer)
    guard = PIIGuard(policy, detector)
    request = ChatRequest(
        model="m", messages=[Message(role="user", content=f"Ada Lovelace <{EMAIL}>")]
    )
    red = guard.apply(request)
    assert red is not None
    assert red.request.messages[0].content == "<PERSON_1> <<EMAIL_1>>"
    assert analyzer.calls[0]["entities"] == ["PERSON"]
    assert analyzer.calls[0]["language"] == "en"


def test_presidio_drops_builtin_kinds_the_policy_left_out() -> None:
    detector = PresidioDetector(_FakeAnalyzer(), skip=frozenset({"email"}))
    assert [f.kind for f in detector.find(f"Ada Lovelace {EMAIL}")] == ["person"]


def test_presidio_missing_degrades_with_warning_or_fails_when_required(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing(_options: PresidioOptions) -> Any:
        raise errors.ConfigError("presidio-analyzer is not installed: pip install ...")

    regex = RegexDetector()
    policy = PIIPolicy(action="mask", engine="presidio")
    with caplog.at_level(logging.WARNING, logger="aiwire.guardrails"):
        assert with_presidio(regex, policy, missing) is regex
    assert "built-in detectors only" in caplog.text and "not installed" in caplog.text
    required = PIIPolicy(action="mask", engine="presidio", presidio=PresidioOptions(required=True))
    with pytest.raises(errors.ConfigError, match="not installed"):
        with_presidio(regex, required, missing)


def test_load_analyzer_without_presidio_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import fails
    with pytest.raises(errors.ConfigError, match=r"aiwire\[presidio\]"):
        load_analyzer(PresidioOptions())


def test_load_analyzer_never_lets_presidio_download_a_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Presidio's spaCy engine downloads a missing model; aiwire checks first and refuses."""
    created: list[Any] = []
    analyzer_mod = types.ModuleType("presidio_analyzer")
    nlp_mod = types.ModuleType("presidio_analyzer.nlp_engine")

    class Provider:
        def __init__(self, nlp_configuration: dict[str, Any]) -> None:
            created.append(nlp_configuration)

        def create_engine(self) -> str:
            return "engine"

    class Engine:
        def __init__(self, nlp_engine: str, supported_languages: list[str]) -> None:
            self.nlp_engine = nlp_engine

    class Extractor:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    tld_mod = types.ModuleType("tldextract.tldextract")
    tld_mod.TLDExtract = Extractor  # type: ignore[attr-defined]
    tld_mod.TLD_EXTRACTOR = "fetches the suffix list from the web"  # type: ignore[attr-defined]
    nlp_mod.NlpEngineProvider = Provider  # type: ignore[attr-defined]
    analyzer_mod.AnalyzerEngine = Engine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "presidio_analyzer", analyzer_mod)
    monkeypatch.setitem(sys.modules, "presidio_analyzer.nlp_engine", nlp_mod)
    monkeypatch.setitem(sys.modules, "tldextract", types.ModuleType("tldextract"))
    monkeypatch.setitem(sys.modules, "tldextract.tldextract", tld_mod)
    with pytest.raises(errors.ConfigError, match="does not download"):
        load_analyzer(PresidioOptions(model="aiwire_no_such_spacy_model"))
    assert created == []
    # An installed "model" (any importable package stands in) starts the engine.
    analyzer = load_analyzer(PresidioOptions(model="json"))
    assert created[0]["models"] == [{"lang_code": "en", "model_name": "json"}]
    assert isinstance(analyzer, Engine)
    # tldextract (Presidio's email recognizer) is kept off the network.
    assert tld_mod.TLD_EXTRACTOR.kwargs == {"suffix_list_urls": (), "cache_dir": None}  # type: ignore[attr-defined]
