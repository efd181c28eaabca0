"""The access log as the page shows it: filtered by person, decision, reason and date, as rows or as CSV, and the
denied faces' snapshots (when the door keeps them, ``[state] snapshots``) matched to their rows. Read-only: the page
never writes the log."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sqlite3
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

from edge.door.accesslog import FILENAME

DECISIONS = ("grant", "deny", "lockout", "remote_open", "remote_rejected")
COLUMNS = ("id", "ts", "identity", "score", "decision", "reason")
SNAPSHOT = re.compile(r"denied-(\d{1,12}\.\d{3})\.jpg")
#: A snapshot belongs to a denial logged within this many seconds of it.
SNAPSHOT_SLACK = 3.0


@dataclass(frozen=True)
class Filter:
    person: str = ""
    decision: str = ""
    reason: str = ""
    since: str = ""      # YYYY-MM-DD, local time, inclusive
    until: str = ""      # YYYY-MM-DD, inclusive

    def where(self) -> tuple:
        """The SQL condition and its parameters (values are always parameters, never text in the statement)."""
        parts, args = [], []
        if self.person:
            parts.append("identity = ?")
            args.append(self.person)
        if self.decision:
            if self.decision not in DECISIONS:
                raise ValueError(f"no decision {self.decision!r}")
            parts.append("decision = ?")
            args.append(self.decision)
        if self.reason:
            parts.append("instr(lower(reason), ?) > 0")
            args.append(self.reason.lower())
        for text, op, days in ((self.since, ">=", 0), (self.until, "<", 1)):
            if text:
                try:
                    day = dt.datetime.strptime(text, "%Y-%m-%d") + dt.timedelta(days=days)
                    stamp = day.timestamp()
                except OverflowError:
                    raise ValueError(f"date {text!r} is out of range") from None
                parts.append(f"ts {op} ?")
                args.append(stamp)
        return (" WHERE " + " AND ".join(parts)) if parts else "", args


def _connect(state_dir: Path) -> Optional[sqlite3.Connection]:
    path = Path(state_dir) / FILENAME
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
    db.row_factory = sqlite3.Row
    return db


def rows(state_dir: Path, f: Filter, limit: int = 200) -> Iterator[dict]:
    """The newest ``limit`` rows matching ``f``, newest first, read from the database a batch at a time (a CSV of a
    million rows never sits in memory)."""
    where, args = f.where()
    db = _connect(state_dir)
    if db is None:
        return
    try:
        cur = db.execute(f"SELECT {', '.join(COLUMNS)} FROM events{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        while True:
            batch = cur.fetchmany(1000)
            if not batch:
                return
            for r in batch:
                yield dict(r)
    finally:
        db.close()


def people_seen(state_dir: Path) -> List[str]:
    db = _connect(state_dir)
    if db is None:
        return []
    try:
        return [r[0] for r in db.execute("SELECT DISTINCT identity FROM events WHERE identity IS NOT NULL "
                                         "ORDER BY identity")]
    finally:
        db.close()


def as_csv(items) -> Iterator[str]:
    """CSV text in pieces (a header, then a line per row; the time also in ISO 8601, local)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "time", "ts", "identity", "score", "decision", "reason"])
    for n, r in enumerate(items, 1):
        when = dt.datetime.fromtimestamp(r["ts"]).isoformat(timespec="seconds")
        w.writerow([r["id"], when, f"{r['ts']:.3f}", _cell(r["identity"] or ""), f"{r['score']:.4f}",
                    r["decision"], _cell(r["reason"] or "")])
        if n % 2000 == 0:              # a piece every 2,000 rows: few thread hops, little memory
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _cell(text: str) -> str:
    """No formula injection when the CSV is opened in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def snapshot_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "snapshots"


def attach_snapshots(state_dir: Path, items: List[dict]) -> List[dict]:
    """Each deny row with the name of the snapshot taken for it (``snapshot``), when there is one."""
    folder = snapshot_dir(state_dir)
    try:
        files = sorted((float(m.group(1)), p.name) for p in folder.iterdir() if (m := SNAPSHOT.fullmatch(p.name)))
    except OSError:
        files = []
    stamps = [t for t, _ in files]
    for r in items:
        r["snapshot"] = None
        if r["decision"] != "deny" or not files:
            continue
        i = bisect_left(stamps, r["ts"] - SNAPSHOT_SLACK)
        if i < len(files) and abs(files[i][0] - r["ts"]) <= SNAPSHOT_SLACK:
            r["snapshot"] = files[i][1]
    return items


def snapshot_file(state_dir: Path, name: str) -> Optional[Path]:
    """The snapshot file called ``name``, only if the name is one the door writes and it lies in its folder."""
    if not SNAPSHOT.fullmatch(name):
        return None
    folder = snapshot_dir(state_dir).resolve()
    path = (folder / name).resolve()
    return path if path.parent == folder and path.is_file() else None
