"""The table of series detector kinds: everything that lists kinds reads it from here."""

from __future__ import annotations

from service.series import rolling, seasonal, windowed
from service.series.base import SeriesKind
from service.series.errors import SeriesInputError

KINDS: dict[str, SeriesKind] = {
    kind.name: kind for kind in (seasonal.KIND, windowed.KIND, rolling.KIND)
}
DEFAULT_KIND = "seasonal"


def get_kind(name: str) -> SeriesKind:
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise SeriesInputError(
            f"detector must be one of {', '.join(KINDS)}, got {name!r}"
        ) from None
