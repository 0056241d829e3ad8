"""Reading canary rollouts out of the ``models`` list, and refusing inconsistent ones.

::

    models:
      - {name: support, provider: openai, model: gpt-4o-mini, variant: old,
         rollout: {new: 10, old: 90}, sticky: key}
      - {name: support, provider: openai, model: gpt-4.1-mini, variant: new}

Every deployment of a name with a rollout carries a ``variant`` that the split names, and every
variant the split gives a share has a deployment: so it is always clear which deployments are
meant, and a typo cannot silently send 10 % of traffic nowhere. The split (and ``sticky``) may
be written on one entry or repeated identically on several.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiwire.errors import ConfigError
from aiwire.rollouts.split import Rollout, Sticky

if TYPE_CHECKING:
    from aiwire.config import DeploymentConfig


def rollouts_of(models: Sequence[DeploymentConfig]) -> dict[str, Rollout]:
    by_name: dict[str, list[tuple[int, DeploymentConfig]]] = {}
    for i, dep in enumerate(models):
        by_name.setdefault(dep.name, []).append((i, dep))
    out: dict[str, Rollout] = {}
    for name, entries in by_name.items():
        rollout = _rollout(name, entries)
        if rollout is not None:
            out[name] = rollout
    return out


def _rollout(name: str, entries: list[tuple[int, DeploymentConfig]]) -> Rollout | None:
    split: dict[str, float] | None = None
    sticky: Sticky | None = None
    for i, dep in entries:
        where = f"models[{i}] ({name})"
        if dep.rollout is not None:
            if split is not None and dep.rollout != split:
                raise ConfigError(f"{where}: its rollout differs from another entry of {name!r}")
            split = dict(dep.rollout)
        if dep.sticky is not None:
            if sticky is not None and dep.sticky != sticky:
                raise ConfigError(f"{where}: its sticky differs from another entry of {name!r}")
            sticky = dep.sticky
    if split is None:
        for i, dep in entries:
            if dep.variant is not None or dep.sticky is not None:
                field = "variant" if dep.variant is not None else "sticky"
                raise ConfigError(
                    f"models[{i}] ({name}): {field} is set but no entry of {name!r} has a "
                    "rollout: {variant: percent, ...}"
                )
        return None
    labels = {dep.variant for _, dep in entries}
    for i, dep in entries:
        if dep.variant is None or dep.variant not in split:
            raise ConfigError(
                f"models[{i}] ({name}): a name with a rollout needs every deployment labelled "
                f"with one of its variants ({', '.join(split)}); this one has "
                f"{'none' if dep.variant is None else repr(dep.variant)}"
            )
    idle = [v for v, pct in split.items() if pct > 0 and v not in labels]
    if idle:
        raise ConfigError(
            f"the rollout of {name!r} gives traffic to variant {idle[0]!r}, but no deployment of "
            f"{name!r} has variant: {idle[0]}"
        )
    try:
        return Rollout(name, split, sticky or "none")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
