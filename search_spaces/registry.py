"""The registry of named search spaces (one decorator-filled table, as timm's model registry)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from search_spaces.base import SearchSpace

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}


def register_space(name: str) -> Callable[[Callable[[], SearchSpace]], Callable[[], SearchSpace]]:
    """Decorator: register a zero-argument factory under ``name``."""

    def decorate(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
        if name in _FACTORIES:
            raise ValueError(f"search space {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return decorate


def list_spaces() -> list[str]:
    """Names of every registered search space, sorted."""
    return sorted(_FACTORIES)


def get_space(name: str) -> SearchSpace:
    """The search space registered as ``name``, or derived from one (``BASE[op,...]``, or a space file: see
    ``search_spaces.derived``, read each time: a file may change); ValueError lists the known names otherwise."""
    if name.endswith(".json"):
        from search_spaces.derived import resolve_derived

        return _named(resolve_derived(name).name)  # type: ignore[union-attr]
    return _named(name)


@cache
def _named(name: str) -> SearchSpace:
    if name not in _FACTORIES:
        from search_spaces.derived import resolve_derived

        derived = resolve_derived(name)
        if derived is not None:
            return derived
        raise ValueError(f"unknown search space {name!r}; known spaces: {', '.join(list_spaces())} (or one derived "
                         "from them: 'mbconv-tiny[e3k3,e6k5]', or a space file 'hwnas evolve' wrote)")
    return _FACTORIES[name]()
