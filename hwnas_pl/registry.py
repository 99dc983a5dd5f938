"""A name -> factory registry shared by backbones, search spaces and cost models.

Plugins register under a short name so that configs and the command line can name them (timm's
``register_model`` / ``create_model`` habit): registering a name twice warns, ``None`` keyword arguments are
dropped before the factory is called, and an unknown name raises one sentence listing the known ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hwnas_pl.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps short names to factories.

    Args:
        kind: what the registry holds, used in messages ("backbone", "search space").

    Example:
        >>> reg = Registry("widget")
        >>> @reg.register("box")
        ... def make_box(size=1):
        ...     return ("box", size)
        >>> reg.create("box", size=None)
        ('box', 1)
        >>> reg.names()
        ['box']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that stores a factory under ``name`` (default: the factory's ``__name__``)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._factories:
                warnings.warn(f"Overwriting {self.kind} '{key}' in the registry.", stacklevel=2)
            self._factories[key] = factory
            return factory

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``.

        Raises:
            ConfigError: naming the unknown ``name`` and the registered ones.
        """
        if name not in self._factories:
            raise ConfigError(f"Unknown {self.kind} '{name}'; expected one of: {', '.join(self.names())}.")
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered under ``name`` with the non-``None`` ``kwargs``."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})
