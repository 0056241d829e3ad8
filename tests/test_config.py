"""Config loading, secret references and the rule that keys never leak."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from aiwire.config import Config, ProviderConfig
from aiwire.errors import ConfigError
from aiwire.router import Router
from aiwire.secrets import Secret, resolve

KEY = "sk-proj-SECRETVALUE-0123456789abcdefghij"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "aiwire.yaml"
    p.write_text(text)
    return p


def test_env_reference_resolves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MY_OPENAI", KEY)
    cfg = Config.from_file(
        write(
            tmp_path,
            """
providers:
  openai: {type: openai, api_key: env:MY_OPENAI}
models:
  - {name: fast, provider: openai, model: gpt-4o-mini}
""",
        )
    )
    router = Router.from_config(cfg)
    provider = router.deployments("fast")[0].provider
    assert provider.api_key is not None and provider.api_key.reveal() == KEY


def test_file_reference_resolves(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    assert resolve(f"file:{keyfile}").reveal() == KEY


def test_literal_key_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""providers:
  openai:
    type: openai
    api_key: {KEY}
""",
    )
    with pytest.raises(ConfigError) as info:
        Config.from_file(path)
    msg = str(info.value)
    assert f"{path}:4" in msg and "providers.openai.api_key" in msg
    assert "literal key" in msg and "env:NAME" in msg
    assert KEY not in msg  # the refusal must not repeat the secret


def test_missing_env_variable_fails_at_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    cfg = Config.from_dict(
        {
            "providers": {"p": {"type": "openai", "api_key": "env:NOT_SET_ANYWHERE"}},
            "models": [{"name": "m", "provider": "p", "model": "x"}],
        }
    )
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        Router.from_config(cfg)


def test_standard_variable_used_and_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        ProviderConfig(type="anthropic").key("claude")
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    secret = ProviderConfig(type="anthropic").key("claude")
    assert secret is not None and secret.reveal() == KEY


def test_custom_base_url_never_receives_the_cloud_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert ProviderConfig(type="openai", base_url="http://127.0.0.1:11434/v1").key("local") is None


def test_unknown_provider_and_fallback_are_reported() -> None:
    with pytest.raises(ConfigError, match="provider 'nope' is not defined"):
        Config.from_dict({"models": [{"name": "m", "provider": "nope", "model": "x"}]})
    with pytest.raises(ConfigError, match="fallback 'ghost'"):
        Config.from_dict(
            {
                "providers": {"p": {"type": "openai", "base_url": "http://x/v1"}},
                "models": [{"name": "m", "provider": "p", "model": "x", "fallbacks": ["ghost"]}],
            }
        )


def test_unknown_fields_and_bad_values_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """router:
  retries: -1
  colour: blue
""",
    )
    with pytest.raises(ConfigError) as info:
        Config.from_file(path)
    msg = str(info.value)
    assert "router.retries" in msg and f"{path}:2" in msg
    assert "router.colour" in msg and f"{path}:3" in msg


def test_unknown_provider_type(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config.from_dict({"providers": {"p": {"type": "telepathy", "base_url": "http://x"}}})
    with pytest.raises(ConfigError, match="unknown provider type 'telepathy'"):
        Router.from_config(cfg)


def test_secret_never_shows_its_value() -> None:
    s = Secret(KEY, "env:OPENAI_API_KEY")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", str([s]), str({"k": s})):
        assert KEY not in text
        assert "env:OPENAI_API_KEY" in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    cfg = ProviderConfig(type="openai", api_key=s)
    assert KEY not in repr(cfg) and KEY not in str(cfg.model_dump())


def test_ids_are_unique_and_renewed_in_a_forked_child() -> None:
    import os

    from aiwire.types import new_id

    ids = {new_id("req_") for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == len("req_") + 24 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new random part, so ids never repeat the parent's
        os.write(write, new_id("req_").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child[4:16] != new_id("req_")[4:16]
