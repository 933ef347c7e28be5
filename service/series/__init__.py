"""Time series anomaly detection: causal detectors with expected values and bands.

No web framework or metrics here: the HTTP layer maps ``SeriesInputError`` to 422.
"""

from service.series.errors import SeriesInputError
from service.series.stream import SeriesResult, SeriesStream, detect
from service.series.table import DEFAULT_KIND, KINDS, get_kind

__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "SeriesInputError",
    "SeriesResult",
    "SeriesStream",
    "detect",
    "get_kind",
]
