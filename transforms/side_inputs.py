"""Beam side-input helpers shared by stages (not a stage): no stage file imports another stage file for them."""

from __future__ import annotations

from collections.abc import Callable


class CachedSideInput:
    """Converts a side input once per DoFn instance rather than once per element (Beam hands the same list each
    time): `CachedSideInput(set).get(side_input)`."""

    def __init__(self, convert: Callable):
        self._convert = convert
        self._source_id: int | None = None
        self._value = None

    def get(self, side_input):
        if self._source_id != id(side_input):
            self._source_id, self._value = id(side_input), self._convert(side_input)
        return self._value
