"""A reversible set of attribute patches."""

from __future__ import annotations

from typing import Any

_ABSENT = object()  # the class had no attribute of its own by that name: restore deletes ours


class Patches:
    """Set attributes on objects and put the originals back on `restore()`."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def set(self, target: Any, name: str, value: Any) -> None:
        original = target.__dict__.get(name, _ABSENT) if isinstance(target, type) else getattr(target, name)
        self._saved.append((target, name, original))
        setattr(target, name, value)

    def restore(self) -> None:
        while self._saved:
            target, name, original = self._saved.pop()
            if original is _ABSENT:
                delattr(target, name)
            else:
                setattr(target, name, original)
