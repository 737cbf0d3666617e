"""Case-insensitive look-ups over a frame's ordered, possibly repeated, name/value pairs.

AMI blocks (``Key: value`` lines) and ESL events and replies (``Header-Name: value``) are
the same shape: wire order matters, names repeat (``Hangup-Cause`` twice, ``ChanVariable``
once per variable), and names compare without case. The first occurrence wins a look-up;
``get_all`` returns every one.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["HeaderLookup"]


class HeaderLookup:
    """Mixin for a frozen, slotted dataclass with an ``_index`` field (``None`` at first):
    the subclass gives ``_pairs()``; the index is built once, on the first look-up."""

    __slots__ = ()

    _index: dict[str, str] | None

    def _pairs(self) -> tuple[tuple[str, str], ...]:
        raise NotImplementedError

    def _lookup(self) -> dict[str, str]:
        index = self._index
        if index is None:
            # Reversed so that the first occurrence wins.
            index = {name.lower(): value for name, value in reversed(self._pairs())}
            object.__setattr__(self, "_index", index)
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._lookup().get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._pairs() if key.lower() == wanted]

    def __getitem__(self, name: str) -> str:
        return self._lookup()[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs())

    def __len__(self) -> int:
        return len(self._pairs())
