"""Discovery of merge strategies through the ``neuralop_merge.strategies`` entry points.

Built-in strategies are declared in our own ``pyproject.toml`` exactly as a
third-party distribution declares its own, so both are found the same way. A name
claimed by two distributions is an error naming both; a plugin that fails to import
is skipped with a warning naming it, and the others keep working.

The entry points are read once per process and cached, and each strategy class is
loaded once: :func:`refresh` forgets both, for a distribution installed while the
process runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from .errors import StrategyError

if TYPE_CHECKING:
    from .strategies.base import Strategy

ENTRY_POINT_GROUP = "neuralop_merge.strategies"


@dataclass(frozen=True)
class _Claim:
    entry_point: EntryPoint
    distribution: str


#: The discovered claims, and the object each loaded entry point gave, until :func:`refresh`.
_discovered: dict[str, list[_Claim]] | None = None
_loaded: dict[str, object] = {}


def refresh() -> None:
    """Forget the discovered entry points and loaded strategies; the next lookup scans again."""
    global _discovered
    _discovered = None
    _loaded.clear()


def _claims() -> dict[str, list[_Claim]]:
    """Every entry point of the group, grouped by strategy name (scanned once, see :func:`refresh`)."""
    global _discovered
    if _discovered is None:
        _discovered = _scan()
    return _discovered


def _scan() -> dict[str, list[_Claim]]:
    """Every entry point of the group, grouped by strategy name, duplicates dropped."""
    claims: dict[str, list[_Claim]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry_point.dist.name if entry_point.dist is not None else "<unknown distribution>"
        claim = _Claim(entry_point, distribution)
        same_name = claims.setdefault(entry_point.name, [])
        # One distribution seen twice on sys.path (e.g. an editable install) is one claim.
        if all((c.distribution, c.entry_point.value) != (distribution, entry_point.value) for c in same_name):
            same_name.append(claim)
    return claims


def _load(name: str, claims: list[_Claim]) -> Strategy:
    # Imported here: the base class needs torch, which listing the declared names does not.
    from .strategies.base import Strategy

    if len(claims) > 1:
        owners = " and ".join(f"{c.distribution} ({c.entry_point.value})" for c in claims)
        raise StrategyError(f"strategy {name!r} is claimed by two distributions: {owners}")
    claim = claims[0]
    if name not in _loaded:
        _loaded[name] = claim.entry_point.load()
    loaded = _loaded[name]
    # A fresh instance per call: callers may hold (and a plugin may mutate) their own.
    strategy = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(strategy, Strategy):
        raise TypeError(f"{claim.entry_point.value} is not a neuralop_merge Strategy")
    strategy.name = name
    return strategy


def declared_strategies() -> dict[str, list[str]]:
    """Every declared strategy name with its ``"distribution (module:attribute)"`` claims, sorted by name.

    Read from the entry-point metadata alone: nothing is imported, so a plugin that
    would fail to load is listed too (:func:`available_strategies` loads and checks).
    """
    return {
        name: [f"{claim.distribution} ({claim.entry_point.value})" for claim in claims]
        for name, claims in sorted(_claims().items())
    }


def available_strategies() -> list[str]:
    """Names of the strategies that can be used, sorted.

    A plugin that cannot be imported is left out with a warning naming it; a name
    claimed by two distributions is listed (and refused by :func:`get_strategy`).
    """
    usable = []
    for name, claims in sorted(_claims().items()):
        if len(claims) > 1:
            usable.append(name)
            continue
        try:
            _load(name, claims)
        except Exception as error:  # a broken plugin must not take the others down
            warnings.warn(f"merge strategy plugin {name!r} from {claims[0].distribution} failed to load: {error}")
            continue
        usable.append(name)
    return usable


def get_strategy(name: str) -> Strategy:
    """An instance of the strategy registered under ``name``."""
    claims = _claims()
    if name not in claims:
        known = ", ".join(sorted(claims)) or "none installed"
        raise StrategyError(f"unknown merge strategy {name!r} (available: {known})")
    try:
        return _load(name, claims[name])
    except StrategyError:
        raise
    except Exception as error:
        raise StrategyError(f"merge strategy plugin {name!r} failed to load: {error}") from error
