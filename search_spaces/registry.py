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


@cache
def get_space(name: str) -> SearchSpace:
    """The search space registered as ``name``; ValueError lists the known names otherwise."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown search space {name!r}; known spaces: {', '.join(list_spaces())}")
    return _FACTORIES[name]()
