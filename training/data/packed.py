"""Many short strings in two numpy arrays, so that DataLoader worker processes start quickly and stay small.

A Python list of millions of labels is millions of objects, whose reference counts a forked worker touches (and so
copies) as soon as it reads them; one UTF-8 buffer and an offset array are two objects.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class PackedStrings:
    """An immutable sequence of strings stored as one UTF-8 buffer and `len + 1` offsets."""

    def __init__(self, strings: Iterable[str]):
        encoded = [text.encode("utf-8") for text in strings]
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        if encoded:
            np.cumsum([len(item) for item in encoded], out=self._offsets[1:])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(f"Index {i} is out of range ({len(self)} strings).")
        i %= len(self)
        return self._buffer[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")


__all__ = ["PackedStrings"]
