"""When an enrolled person may open the door: weekly time windows and a valid-until date (a guest's access that
expires). Pure: the time is passed in (the door's local time).

The written form, for the CLI and the web page: windows separated by ``;``, each ``DAYS HH:MM-HH:MM``, where DAYS is
``daily``, a day (``mon``), a range (``mon-fri``, ``fri-mon`` wraps) or a list (``sat,sun``); ``always`` (or empty)
means no restriction. A window ends before midnight (``24:00`` is allowed): a night shift is two windows, e.g.
``mon-fri 22:00-24:00; tue-sat 00:00-06:00``. The start is inclusive, the end exclusive. A valid-until date is
inclusive: ``2026-12-31`` lets the person in until 23:59:59 that day, the door's local time.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from edge.errors import GalleryError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"\s*(\S+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


class ScheduleError(GalleryError, ValueError):
    """A schedule or date that cannot be read (one line, naming what)."""


@dataclass(frozen=True)
class Window:
    days: Tuple[int, ...]       # 0 = Monday
    start: int                  # minutes after midnight, inclusive
    end: int                    # minutes after midnight, exclusive (1440 = midnight)

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"

    def contains(self, when: dt.datetime) -> bool:
        m = when.hour * 60 + when.minute
        return when.weekday() in self.days and self.start <= m < self.end


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: Tuple[int, ...]) -> str:
    if len(days) == 7:
        return "daily"
    runs, i = [], 0
    ds = sorted(days)
    while i < len(ds):
        j = i
        while j + 1 < len(ds) and ds[j + 1] == ds[j] + 1:
            j += 1
        runs.append(DAYS[ds[i]] if i == j else f"{DAYS[ds[i]]}-{DAYS[ds[j]]}")
        i = j + 1
    return ",".join(runs)


def _parse_days(text: str) -> Tuple[int, ...]:
    if text == "daily":
        return tuple(range(7))
    out = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        if a not in DAYS or (b and b not in DAYS):
            raise ScheduleError(f"schedule: {part!r} is not a day (mon, tue, wed, thu, fri, sat, sun, daily, or a "
                                "range such as mon-fri)")
        i, j = DAYS.index(a), DAYS.index(b or a)
        out.update((i + k) % 7 for k in range((j - i) % 7 + 1))
    return tuple(sorted(out))


def parse_window(text: str) -> Window:
    m = _WINDOW.fullmatch(text.lower())
    if not m:
        raise ScheduleError(f"schedule: {text.strip()!r} is not DAYS HH:MM-HH:MM (e.g. mon-fri 08:00-18:00)")
    h1, m1, h2, m2 = (int(g) for g in m.groups()[1:])
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ScheduleError(f"schedule: {text.strip()!r} has a time that does not exist")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= end:
        raise ScheduleError(f"schedule: in {text.strip()!r} the end is not after the start (a window ends by "
                            "24:00; a night shift is two windows)")
    return Window(_parse_days(m.group(1)), start, end)


def parse_hours(text: str) -> Tuple[Window, ...]:
    """Windows from the written form; ``()`` for ``always`` or an empty text."""
    text = (text or "").strip()
    if text.lower() in ("", "always"):
        return ()
    return tuple(parse_window(part) for part in text.split(";") if part.strip())


def parse_until(text: str) -> Optional[float]:
    """``YYYY-MM-DD`` (inclusive, local time) -> the first second after that day; ``never``/empty -> None."""
    text = (text or "").strip()
    if text.lower() in ("", "never"):
        return None
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d")
        return (day + dt.timedelta(days=1)).timestamp()
    except (ValueError, OverflowError):
        raise ScheduleError(f"valid until: {text!r} is not a date YYYY-MM-DD (or never) the door can use") from None


@dataclass(frozen=True)
class Access:
    windows: Tuple[Window, ...] = ()
    valid_until: Optional[float] = None     # a timestamp: access ends at it (None: never)

    @property
    def always(self) -> bool:
        return not self.windows and self.valid_until is None

    def hours(self) -> str:
        return "; ".join(w.describe() for w in self.windows) or "always"

    def until(self) -> str:
        if self.valid_until is None:
            return "never"
        return (dt.datetime.fromtimestamp(self.valid_until) - dt.timedelta(days=1)).strftime("%Y-%m-%d")

    def describe(self) -> str:
        if self.always:
            return "always"
        parts = [self.hours()] if self.windows else []
        if self.valid_until is not None:
            parts.append(f"until {self.until()}")
        return ", ".join(parts)

    def allows(self, when: dt.datetime) -> Optional[str]:
        """None when the person may open at ``when`` (local time), else why not (for the reason ``schedule: ...``)."""
        if self.valid_until is not None and when.timestamp() >= self.valid_until:
            return f"access ended {self.until()}"
        if self.windows and not any(w.contains(when) for w in self.windows):
            return f"outside {self.hours()}"
        return None

    def to_json(self) -> Optional[str]:
        if not self.windows:
            return None
        return json.dumps([{"days": list(w.days), "start": _hhmm(w.start), "end": _hhmm(w.end)}
                           for w in self.windows])


ALWAYS = Access()


def from_row(schedule: Optional[str], valid_until: Optional[float]) -> Access:
    """The stored form (a JSON list of windows, the timestamp) back; :class:`ScheduleError` when it is corrupt."""
    if not schedule:
        return Access((), valid_until)
    try:
        items = json.loads(schedule)
        windows = tuple(parse_window(f"{','.join(DAYS[d] for d in it['days'])} {it['start']}-{it['end']}")
                        for it in items)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ScheduleError(f"a stored schedule is corrupt ({exc.__class__.__name__}): set it again with "
                            "`doorface users access`") from None
    return Access(windows, valid_until)
