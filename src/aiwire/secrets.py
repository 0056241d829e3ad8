"""Secret values and the ``env:NAME`` / ``file:/path`` references that produce them.

A :class:`Secret` never shows its value in ``repr``, ``str``, f-strings, pickles or pydantic dumps;
code that needs the value calls :meth:`Secret.reveal` at the last moment (building a header).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

from aiwire.errors import ConfigError


class Secret:
    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str = "value") -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        return self._value

    @property
    def source(self) -> str:
        """Where the value came from (``env:OPENAI_API_KEY``), safe to show."""
        return self._source

    def __repr__(self) -> str:
        return f"Secret(<hidden from {self._source}>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")

    def __bool__(self) -> bool:
        return bool(self._value)


def is_reference(value: str) -> bool:
    return value.startswith(("env:", "file:"))


def resolve(reference: str, *, field: str = "api_key") -> Secret:
    """Resolve ``env:NAME`` or ``file:/path``. Literal values are refused."""
    if reference.startswith("env:"):
        name = reference[4:].strip()
        if not name:
            raise ConfigError(f"{field}: 'env:' needs a variable name, e.g. env:OPENAI_API_KEY")
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"{field}: environment variable {name} is not set (referenced as env:{name}); "
                f"export {name}=... before starting aiwire"
            )
        return Secret(value.strip(), reference)
    if reference.startswith("file:"):
        path = Path(reference[5:].strip()).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{field}: cannot read secret file {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{field}: secret file {path} is empty")
        return Secret(value, reference)
    raise ConfigError(
        f"{field}: a literal secret in configuration is refused; put it in an environment "
        f"variable and write env:NAME (or in a file and write file:/path)"
    )


def reveal(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Secret):
        return value.reveal()
    raise TypeError("expected a Secret")
