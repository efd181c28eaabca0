"""The enrolled gallery: one SQLite file in the state directory, mode 0600.

Each template keeps the aligned crop (PNG, at the model's input size) and its embedding tagged with the model's
sha256, so ``doorface users reembed`` rebuilds every embedding after a model change without anyone re-enrolling.
Every change is one SQLite transaction (atomic: all or nothing). A file that is not a doorface gallery, or whose
embeddings came from another model, raises :class:`GalleryError` (the daemon then refuses to start: door locked).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from edge.errors import GalleryError
from edge.people.matcher import TemplateIndex
from edge.people.names import check_name, shown
from edge.people.schedule import ALWAYS, Access, from_row

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persons (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL,
    threshold REAL, cohort_sha256 TEXT, schedule TEXT, valid_until REAL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    crop BLOB NOT NULL, embedding BLOB NOT NULL, dim INTEGER NOT NULL, model_sha256 TEXT NOT NULL,
    source TEXT NOT NULL, created REAL NOT NULL);
"""
log = logging.getLogger("doorface")
FILENAME = "gallery.sqlite"


# Older galleries are upgraded in place when opened for writing: version 1 had no per-person thresholds, version 2
# no schedules (edge.people.schedule: NULL = always).
MIGRATIONS = {1: ("ALTER TABLE persons ADD COLUMN threshold REAL", "ALTER TABLE persons ADD COLUMN cohort_sha256 TEXT"),
              2: ("ALTER TABLE persons ADD COLUMN schedule TEXT", "ALTER TABLE persons ADD COLUMN valid_until REAL")}


@dataclass(frozen=True)
class Person:
    name: str
    templates: int
    created: float
    threshold: Optional[float] = None       # the person's own threshold (edge.people.cohort), None when not calibrated
    cohort_sha256: Optional[str] = None     # the cohort it was calibrated against
    access: Access = ALWAYS                 # when they may open the door (edge.people.schedule)


class Gallery:
    """Open with :meth:`open` (the constructor does no I/O)."""

    def __init__(self, path):
        self.path = Path(path)
        self._db: Optional[sqlite3.Connection] = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def open(self, create: bool = False) -> "Gallery":
        if self._db is not None:
            return self
        exists = self.path.exists()
        if not exists and not create:
            raise GalleryError(f"no gallery at {self.path} (enroll someone with `doorface enroll`)")
        created = False
        if not exists:
            make_private_dir(self.path.parent)
            try:   # no exists-then-create race: exactly one process creates the file
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                created = True
            except FileExistsError:
                pass
        if not os.access(self.path, os.R_OK | (os.W_OK if create else 0)):
            raise GalleryError(f"cannot open gallery {self.path}: permission denied (it belongs to "
                               f"{_owner(self.path)}; run as that user, e.g. `sudo -u doorface doorface ...`)")
        db = self._connect(created)
        os.chmod(self.path, 0o600)
        self._db = db
        self._created = created
        return self

    def _connect(self, created: bool) -> sqlite3.Connection:
        """The connection, with the schema checked (or written, for a file this process just ``created``)."""
        db = None
        try:
            db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
            db.execute("PRAGMA foreign_keys = ON")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and not created:
                # Either another enrolment created the file a moment ago and is writing its schema (wait for
                # it, reading only), or it is an empty file: never silently turned into a new, empty gallery.
                size = self.path.stat().st_size
                deadline = time.monotonic() + 2.0
                while not tables and time.monotonic() < deadline:
                    time.sleep(0.05)
                    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not tables:
                    db.close()
                    raise GalleryError(f"{self.path} is empty ({size} bytes), not a doorface gallery: move it "
                                       "away to start a new one")
            if not tables:
                with _tx(db):
                    for stmt in filter(str.strip, SCHEMA.split(";")):
                        db.execute(stmt)
                    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    db.execute("INSERT INTO meta VALUES ('kind', 'doorface-gallery')")
            elif not {"meta", "persons", "templates"} <= tables:
                raise GalleryError(f"{self.path} is not a doorface gallery")
            kind = db.execute("SELECT value FROM meta WHERE key='kind'").fetchone()
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if kind and kind[0] == "doorface-gallery" and version and int(version[0]) in MIGRATIONS:
                version = (self._migrate(db, int(version[0])),)
            if not kind or kind[0] != "doorface-gallery" or not version or int(version[0]) != SCHEMA_VERSION:
                raise GalleryError(f"{self.path} is not a doorface gallery of schema version {SCHEMA_VERSION}")
            db.execute("PRAGMA quick_check").fetchone()
        except (GalleryError, sqlite3.DatabaseError) as exc:
            if created:    # a new gallery that could not be made (a full disk): nothing is left behind
                self._discard(db)
                raise GalleryError(f"cannot create gallery {self.path}: {exc}; nothing was left behind") from None
            if isinstance(exc, GalleryError):
                raise
            raise GalleryError(f"corrupt gallery {self.path}: {exc}") from None
        return db

    def _discard(self, db=None) -> None:
        """Close and remove a gallery file this process created (and its journal)."""
        for conn in (db, self._db):
            if conn is not None:
                conn.close()
        self._db = None
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot remove the unfinished gallery %s%s: %s", self.path, suffix, exc)

    def _migrate(self, db: sqlite3.Connection, version: int) -> int:
        if not os.access(self.path, os.W_OK):
            raise GalleryError(f"gallery {self.path} is of schema version {version} and must be upgraded: run "
                               "`doorface users reembed` as its owner")
        with _tx(db):
            while version in MIGRATIONS:
                for stmt in MIGRATIONS[version]:
                    db.execute(stmt)
                version += 1
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
        return version

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, *exc):
        # A first enrollment that failed (a full disk, a refused face) leaves no gallery behind: the file this
        # block created is removed when nobody was stored in it.
        if exc_type is not None and getattr(self, "_created", False) and self._db is not None:
            try:
                empty = self._db.execute("SELECT COUNT(*) FROM persons").fetchone()[0] == 0
            except sqlite3.Error:
                empty = True
            if empty:
                self._discard()
                return
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise GalleryError("gallery is not open")
        return self._db

    # -- people ----------------------------------------------------------------------------------------
    def people(self) -> List[Person]:
        rows = self.db.execute(
            "SELECT p.name, COUNT(t.id), p.created, p.threshold, p.cohort_sha256, p.schedule, p.valid_until "
            "FROM persons p LEFT JOIN templates t ON t.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name").fetchall()
        return [Person(*r[:5], from_row(r[5], r[6])) for r in rows]

    def set_access(self, name: str, access: Access) -> str:
        """When ``name`` may open the door (one transaction); returns the stored name."""
        with _tx(self.db):
            name = self.stored_name(name)
            self.db.execute("UPDATE persons SET schedule=?, valid_until=? WHERE name=?",
                            (access.to_json(), access.valid_until, name))
        return name

    def has(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM persons WHERE name=?", (name,)).fetchone() is not None

    def add_templates(self, name: str, crops, embeddings, model_sha256: str, sources, check=None,
                      cohort=None) -> int:
        """Add templates for ``name`` (creating the person) in one transaction. Returns the number added.

        ``check()`` runs inside that transaction before anything is written (the duplicate-face check), so two
        enrolments at once cannot both pass it and store one face under two names. With a ``cohort``
        (:class:`edge.people.cohort.Cohort`), the person's threshold is recomputed from all their templates in the same
        transaction."""
        name = check_name(name)
        crops, embeddings, sources = list(crops), np.asarray(embeddings, np.float32), list(sources)
        if not len(crops) or len(crops) != len(embeddings) or len(crops) != len(sources):
            raise GalleryError("nothing to add")
        now = time.time()
        with _tx(self.db):
            if check is not None:
                check()
            self.db.execute("INSERT OR IGNORE INTO persons (name, created) VALUES (?, ?)", (name, now))
            pid = self.db.execute("SELECT id FROM persons WHERE name=?", (name,)).fetchone()[0]
            for crop, emb, src in zip(crops, embeddings, sources):
                self.db.execute(
                    "INSERT INTO templates (person_id, crop, embedding, dim, model_sha256, source, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (pid, _png(crop), emb.astype("<f4").tobytes(), int(emb.shape[-1]), model_sha256, str(src), now))
            self._calibrate(cohort, model_sha256, only=pid)
        return len(crops)

    def recalibrate(self, cohort, model_sha256: str, then=None) -> int:
        """Recompute every person's threshold against ``cohort`` (None: clear them; the global threshold alone
        decides), in one transaction; ``then()`` runs last inside it (writing the cohort file: if that fails,
        nobody is recalibrated). Returns the number of people."""
        with _tx(self.db):
            n = self._calibrate(cohort, model_sha256)
            if then is not None:
                then()
            return n

    def _calibrate(self, cohort, model_sha256: str, only: Optional[int] = None) -> int:
        ids = [r[0] for r in self.db.execute("SELECT id FROM persons" + (" WHERE id=?" if only else ""),
                                             (only,) if only else ())]
        for pid in ids:
            if cohort is None:
                self.db.execute("UPDATE persons SET threshold=NULL, cohort_sha256=NULL WHERE id=?", (pid,))
                continue
            rows = self.db.execute("SELECT embedding, model_sha256 FROM templates WHERE person_id=?",
                                   (pid,)).fetchall()
            if any(r[1] != model_sha256 for r in rows):
                raise GalleryError(f"gallery {self.path} holds embeddings of another model; run "
                                   "`doorface users reembed`")
            if rows:
                t = np.stack([np.frombuffer(r[0], "<f4") for r in rows])
                self.db.execute("UPDATE persons SET threshold=?, cohort_sha256=? WHERE id=?",
                                (cohort.threshold(t), cohort.sha256, pid))
        return len(ids)

    def stored_name(self, name: str) -> str:
        """The enrolled name ``name`` refers to: itself, else its stripped NFC spelling (as names are stored since
        the name rule); a name stored before the rule (even an empty one) is found as it was typed."""
        if not self.has(name):
            clean = unicodedata.normalize("NFC", name.strip())
            if self.has(clean):
                return clean
            raise GalleryError(f"no person named {shown(name, quote=True)}")
        return name

    def remove(self, name: str) -> str:
        """Remove a person and their templates; returns the name removed."""
        with _tx(self.db):
            name = self.stored_name(name)
            self.db.execute("DELETE FROM persons WHERE name=?", (name,))
        return name

    def rename(self, old: str, new: str) -> str:
        """Rename a person; ``new`` must keep the name rule (:mod:`edge.people.names`). Returns the stored new name."""
        new = check_name(new)
        with _tx(self.db):
            old = self.stored_name(old)
            if new != old and self.has(new):
                raise GalleryError(f"a person named {shown(new, quote=True)} exists already")
            self.db.execute("UPDATE persons SET name=? WHERE name=?", (new, old))
        return new

    # -- embeddings ------------------------------------------------------------------------------------
    def crops(self):
        """``[(template_id, name, crop RGB uint8)]`` for every template."""
        rows = self.db.execute(
            "SELECT t.id, p.name, t.crop FROM templates t JOIN persons p ON p.id = t.person_id ORDER BY t.id")
        return [(tid, name, _unpng(blob)) for tid, name, blob in rows]

    def reembed(self, embed_crop, model_sha256: str, progress=None, input_size: Optional[int] = None,
                cohort=None) -> int:
        """Recompute every embedding from its stored crop with ``embed_crop``, and every person's threshold against
        ``cohort`` (all in one transaction).

        Crops are stored as the enrolling model saw them; a model with another input size (another alignment,
        e.g. the small 96 px model vs the 150 px dlib port) cannot use them, and those people must enroll again.
        """
        items = self.crops()
        if input_size:
            wrong = sorted({name for _, name, crop in items if crop.shape[0] != input_size})
            if wrong:
                sizes = sorted({crop.shape[0] for _, _, crop in items if crop.shape[0] != input_size})
                raise GalleryError(
                    f"the stored faces of {', '.join(map(shown, wrong))} were aligned for a {sizes[0]} px model, "
                    f"this model takes {input_size} px: enroll them again (`doorface users remove NAME`, then "
                    "`doorface enroll`)")
        new = []
        for tid, _, crop in (progress(items) if progress else items):
            new.append((tid, np.asarray(embed_crop(crop), np.float32)))
        with _tx(self.db):
            for tid, emb in new:
                self.db.execute("UPDATE templates SET embedding=?, dim=?, model_sha256=? WHERE id=?",
                                (emb.astype("<f4").tobytes(), int(emb.shape[-1]), model_sha256, tid))
            self._calibrate(cohort, model_sha256)
        return len(new)

    def index(self, model_sha256: str, cohort_sha256: Optional[str] = None) -> TemplateIndex:
        """All templates as a :class:`TemplateIndex` with each person's stored threshold; refuses embeddings made
        with another model and, given the active cohort's ``cohort_sha256``, anyone not calibrated against it."""
        rows = self.db.execute(
            "SELECT p.name, t.embedding, t.dim, t.model_sha256 FROM templates t "
            "JOIN persons p ON p.id = t.person_id ORDER BY t.id").fetchall()
        foreign = {r[3] for r in rows if r[3] != model_sha256}
        if foreign:
            raise GalleryError(
                f"gallery {self.path} holds embeddings of another model ({sorted(foreign)[0][:12]}...); "
                "run `doorface users reembed`")
        dims = {r[2] for r in rows}
        if len(dims) > 1:
            raise GalleryError(f"gallery {self.path} mixes embedding sizes {sorted(dims)}")
        try:
            embs = np.stack([np.frombuffer(r[1], "<f4") for r in rows]) if rows else np.zeros((0, 0), np.float32)
        except ValueError as exc:
            raise GalleryError(f"corrupt gallery {self.path}: {exc}") from None
        if rows and embs.shape[1] != rows[0][2]:
            raise GalleryError(f"corrupt gallery {self.path}: embedding size mismatch")
        people = self.people()
        if cohort_sha256 is not None:
            stale = [p.name for p in people if p.cohort_sha256 != cohort_sha256]
            if stale:
                raise GalleryError(
                    f"{', '.join(map(shown, stale[:3]))}{' and others' if len(stale) > 3 else ''} not calibrated "
                    f"against the active cohort ({cohort_sha256[:12]}): run `doorface users reembed`")
        thresholds = {p.name: p.threshold for p in people if p.threshold is not None}
        access = {p.name: p.access for p in people if not p.access.always}
        return TemplateIndex(embs, [r[0] for r in rows], thresholds, access=access)


@contextmanager
def _tx(db: sqlite3.Connection):
    """One write transaction (``BEGIN IMMEDIATE``: taken before any read, so a check inside it and the writes
    after it see the same gallery). A failed write (disk full, read-only file) is a :class:`GalleryError`; SQLite
    may already have rolled back by itself, so a failing ROLLBACK is not a second error."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise GalleryError(f"cannot write the gallery: {exc}") from None
    try:
        yield
        db.execute("COMMIT")
    except BaseException as exc:
        try:
            db.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass
        if isinstance(exc, sqlite3.Error):
            raise GalleryError(f"cannot write the gallery: {exc}; nothing was changed") from None
        raise


def make_private_dir(path: Path) -> None:
    """The state dir: created 0700 whatever the umask (biometric data lives in it)."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)


def _owner(path: Path) -> str:
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (ImportError, KeyError, OSError):
        return "another user"


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise GalleryError("cannot encode crop")
    return buf.tobytes()


def _unpng(blob: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise GalleryError("corrupt gallery: a stored crop cannot be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
