"""The one error type of the series package."""

from __future__ import annotations


class SeriesInputError(ValueError):
    """Input that cannot be used; the message names the field (and index) and the problem.

    The HTTP layer maps it to 422 with the message as ``detail``.
    """
