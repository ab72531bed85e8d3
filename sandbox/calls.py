"""What a simulated REST method receives and returns, and the method tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.store import Portal


@dataclass
class Call:
    """One method call: decoded params (named, or the values in wire order) and list offset."""

    portal: Portal
    params: dict[str, Any]
    start: int | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)

    def named(self, name: str, default: Any = None) -> Any:
        """A named param, matched case-insensitively (Engine controllers, event.bind)."""
        if name in self.params:
            return self.params[name]
        lowered = name.lower()
        for key, value in self.params.items():
            if str(key).lower() == lowered:
                return value
        return default

    def values(self) -> list[Any]:
        """The params' values in wire order, keys thrown away (reference §7.1)."""
        return list(self.params.values())


@dataclass
class Outcome:
    """A method's result before the envelope: `total`/`next` are lifted to the top level."""

    result: Any
    total: int | None = None
    next: int | None = None


Handler = Callable[[Call], Outcome]


@dataclass(frozen=True)
class Method:
    """A table entry: the handler, whether it binds by position, whether it writes."""

    handler: Handler
    positional: bool = False
    write: bool = False


CLASSIC: dict[str, Method] = {}
V3: dict[str, Method] = {}


def register(table: dict[str, Method], *names: str, positional: bool = False,
             write: bool = False) -> Callable[[Handler], Handler]:
    """Decorator: put a handler in `table` under each (lower-case) name."""
    def decorate(handler: Handler) -> Handler:
        for name in names:
            table[name.lower()] = Method(handler, positional=positional, write=write)
        return handler
    return decorate
