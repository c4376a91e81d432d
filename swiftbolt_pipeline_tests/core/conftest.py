"""Build the XNYS calendar once with a pandas deprecation muted.

exchange_calendars 4.13 reads `Series.values` on a tz-aware column when it builds a calendar;
pandas 3.1 warns about that, and pytest turns warnings into errors. The warning is harmless
(the values are UTC nanoseconds either way); the lasting fix belongs in the pytest
`filterwarnings` setting or in `core/calendar.py`, outside this folder.
"""

from __future__ import annotations

import warnings
from datetime import date

from swiftbolt_pipeline.core import calendar

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
    calendar.is_session(date(2024, 1, 2))
