"""Eligibility: deterministic requests by default, config mode, the request header, key opt-out."""

from __future__ import annotations

from typing import Any

import pytest

from aiwire.cache import Decision, cacheable, decide, deterministic, directives, key_opted_out
from aiwire.errors import BadRequestError
from aiwire.types import ChatRequest

USE = Decision(lookup=True, store=True)
REFRESH = Decision(lookup=False, store=True)
SKIP = Decision(lookup=False, store=False)


def req(**params: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], **params)


GREEDY = req(temperature=0)
SEEDED = req(temperature=0.9, seed=3)
SAMPLED = req(temperature=0.7)
DEFAULT = req()  # no temperature: the provider's default (1), so sampled


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    assert deterministic(GREEDY) and deterministic(req(temperature=0.0))
    assert deterministic(SEEDED) and deterministic(req(seed=0))
    assert not deterministic(SAMPLED)
    assert not deterministic(DEFAULT)
    assert not deterministic(req(temperature=0.01))


@pytest.mark.parametrize(
    ("request_", "mode", "header", "expected"),
    [
        # default mode: deterministic requests only
        (GREEDY, "deterministic", None, USE),
        (SEEDED, "deterministic", None, USE),
        (SAMPLED, "deterministic", None, SKIP),
        (DEFAULT, "deterministic", None, SKIP),
        # config widens or closes it
        (SAMPLED, "all", None, USE),
        (DEFAULT, "all", None, USE),
        (GREEDY, "off", None, SKIP),
        # the header: force, no-cache, no-store
        (SAMPLED, "deterministic", "force", USE),
        (GREEDY, "deterministic", "no-cache", REFRESH),
        (SAMPLED, "deterministic", "no-cache", SKIP),
        (SAMPLED, "deterministic", "force, no-cache", REFRESH),
        (GREEDY, "deterministic", "no-store", SKIP),
        (GREEDY, "all", "no-store", SKIP),
        (SAMPLED, "deterministic", "force,no-store", SKIP),
        (GREEDY, "deterministic", " No-Cache ", REFRESH),
        (GREEDY, "deterministic", "", USE),
        # what an operator turned off stays off, whatever the client asks
        (SAMPLED, "off", "force", SKIP),
    ],
)
def test_decide(request_: ChatRequest, mode: Any, header: str | None, expected: Decision) -> None:
    assert decide(request_, mode, header) == expected
    assert cacheable(request_, mode, header) is expected.store


@pytest.mark.parametrize("header", [None, "force", "no-cache"])
def test_a_key_that_opted_out_is_never_cached(header: str | None) -> None:
    assert decide(GREEDY, "all", header, opted_out=True) == SKIP
    assert not cacheable(GREEDY, "all", header, opted_out=True)


def test_key_opt_out_is_an_explicit_false() -> None:
    assert key_opted_out({"cache": False})
    assert not key_opted_out({"cache": True})
    assert not key_opted_out({})
    assert not key_opted_out(None)
    assert not key_opted_out({"log_content": False})


def test_an_unknown_directive_is_refused_not_ignored() -> None:
    with pytest.raises(BadRequestError) as info:
        decide(GREEDY, "deterministic", "nostore")
    assert info.value.status == 400
    assert info.value.code == "invalid_cache_directive"
    assert info.value.param == "x-aiwire-cache"
    assert "'nostore'" in info.value.message
    with pytest.raises(BadRequestError):
        directives("no-cache, hit")


def test_directives_are_trimmed_and_lowercased() -> None:
    assert directives(" FORCE , no-cache,,") == {"force", "no-cache"}
    assert directives(None) == frozenset()
