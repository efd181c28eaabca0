"""The People page's work: list, enroll by upload, rename, remove, re-embed, and a person's stored photos (admins
only). Everything goes through :mod:`edge.people` (the gallery's transactions and the enrollment's checks, as the CLI
uses them); after a change the door is asked to reload its gallery through the socket."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from edge.errors import EnrollmentError
from edge.people import gallery as gal
from edge.people.names import check_name, shown
from edge.web.uploads import Verdict, judge, safe_name

#: Photos one enrollment takes at most.
MAX_PHOTOS = 20


@dataclass
class Enrolled:
    """What an upload enrollment did: every photo's verdict, how many were stored, and the report lines."""

    name: str
    verdicts: List[Verdict]
    stored: int = 0
    lines: List[str] = field(default_factory=list)
    error: Optional[str] = None


class PeopleService:
    """Built from the config; loads the models on first use (the page starts fast and stays small until someone
    enrolls). One enrollment or re-embedding at a time."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.state = Path(cfg["state"]["dir"])
        self._analyzer = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.state / gal.FILENAME

    def analyzer(self):
        from edge.build import build_analyzer, calibrate_liveness

        if self._analyzer is None:
            a = build_analyzer(self.cfg)
            a.embedder.load()
            if a.liveness is not None:
                a.liveness.load()
                calibrate_liveness(self.cfg, self.state, a.liveness)
            self._analyzer = a
        return self._analyzer

    def operating_point(self) -> Tuple[float, float]:
        from edge.vision.sidecar import operating_point, read_sidecar

        thr, margin, _ = operating_point(read_sidecar(self.cfg["model"]["embedder"]), self.cfg["match"])
        return thr, margin

    def people(self) -> List[dict]:
        """Each person: name, templates, enrolled, own threshold and the threshold the door uses."""
        if not self.path.exists():
            return []
        thr, _ = self.operating_point()
        off = self.cfg["match"]["calibration"] == "off"
        with gal.Gallery(self.path) as g:
            people = g.people()
            ids = _template_ids(g)
        return [{"name": p.name, "templates": p.templates, "created": p.created, "own": p.threshold,
                 "threshold": thr if off or p.threshold is None else max(thr, p.threshold),
                 "template_ids": ids.get(p.name, []), "access": p.access.describe(), "hours": p.access.hours(),
                 "until": "" if p.access.valid_until is None else p.access.until()} for p in people]

    def set_access(self, name: str, hours: str, until: str) -> str:
        """A person's weekly hours and last day (:mod:`edge.people.schedule`'s written forms); the line to show."""
        from edge.people.schedule import Access, parse_hours, parse_until

        access = Access(parse_hours(hours), parse_until(until))     # both checked before anything changes
        with gal.Gallery(self.path) as g:
            name = g.set_access(name, access)
        return f"{name} may open: {access.describe()}."

    def enroll(self, name: str, photos: Sequence[Tuple[str, bytes]], user: str) -> Enrolled:
        """Judge every photo (the CLI's checks, in words), refuse the ones that match or lie too close to someone
        else, and store the rest in one transaction (its duplicate check runs again inside it)."""
        name = check_name(name)
        if not photos:
            return Enrolled(name, [], error="Choose at least one photo.")
        if len(photos) > MAX_PHOTOS:
            return Enrolled(name, [], error=f"At most {MAX_PHOTOS} photos at a time.")
        with self._lock:
            analyzer = self.analyzer()
            verdicts = [judge(fn, data, analyzer) for fn, data in photos]
            with gal.Gallery(self.path).open(create=True) as g:
                return self._store(name, verdicts, g, analyzer, user)

    def _store(self, name: str, verdicts: List[Verdict], g, analyzer, user: str) -> Enrolled:
        import numpy as np

        from edge.build import load_cohort
        from edge.people.enroll import check_not_someone_else, closest_other

        thr, margin = self.operating_point()
        sha = analyzer.embedder.sha256
        index = g.index(sha)
        for v in verdicts:
            if v.ok:
                _household(v, name, closest_other(name, v.embedding[None], index), thr, margin)
        good = [v for v in verdicts if v.ok]
        out = Enrolled(name, verdicts)
        if not good:
            out.error = f"Nothing stored: none of the photos can be used for {shown(name)}."
            return out
        embs = np.stack([v.embedding for v in good])
        cohort = load_cohort(self.cfg, self.state, analyzer.embedder)
        return _stored(out, g, thr, margin, cohort, lambda: g.add_templates(
            name, [v.crop for v in good], embs, sha, [f"web upload by {user}: {safe_name(v.filename)}" for v in good],
            check=lambda: check_not_someone_else(name, embs, g, sha, thr, margin), cohort=cohort))

    def capture(self, name: str, socket_path, user: str, say, count: int = 5) -> Enrolled:
        """Enroll ``name`` at the door camera, guided, while the door keeps deciding: the CLI's capture
        (:func:`edge.people.enroll.enroll_camera`: quality gates, distinct poses, the household check, all or
        nothing) on frames the door sends through the socket. ``say(line)``: the guidance, as it goes."""
        from edge.build import load_cohort
        from edge.people.enroll import enroll_camera
        from edge.web.capture import SocketFrames

        name = check_name(name)
        with self._lock:
            analyzer = self.analyzer()
            thr, margin = self.operating_point()
            cohort = load_cohort(self.cfg, self.state, analyzer.embedder)
            src = SocketFrames(socket_path, count=150, width=640, fps=8.0, user=user)
            out = Enrolled(name, [])
            with gal.Gallery(self.path).open(create=True) as g:
                return _stored(out, g, thr, margin, cohort, lambda: enroll_camera(
                    name, src, analyzer, g, thr, count, min_margin=margin, cohort=cohort, say=say, max_frames=150))

    def rename(self, old: str, new: str) -> str:
        with gal.Gallery(self.path) as g:
            return g.rename(old, new)

    def remove(self, name: str) -> str:
        with gal.Gallery(self.path) as g:
            return g.remove(name)

    def reembed(self) -> str:
        from edge.build import calibration_line, load_cohort
        from edge.vision.jitter import template_embedding

        with self._lock:
            analyzer = self.analyzer()
            cohort = load_cohort(self.cfg, self.state, analyzer.embedder)
            with gal.Gallery(self.path) as g:
                n = g.reembed(partial(template_embedding, analyzer.embedder.embed_crop), analyzer.embedder.sha256,
                              input_size=analyzer.embedder.input_size, cohort=cohort)
        return f"re-embedded {n} template(s); {calibration_line(self.cfg, cohort)}"

    def photo(self, template_id: int) -> Optional[bytes]:
        """One stored face as JPEG (None: no such template)."""
        import cv2

        if not self.path.exists():
            return None
        with gal.Gallery(self.path) as g:
            for tid, _, crop in g.crops():
                if tid == template_id:
                    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    return buf.tobytes() if ok else None
        return None


def _template_ids(g) -> dict:
    out: dict = {}
    for tid, name in g.db.execute("SELECT t.id, p.name FROM templates t JOIN persons p ON p.id = t.person_id "
                                  "ORDER BY t.id"):
        out.setdefault(name, []).append(tid)
    return out


def _household(v: Verdict, name: str, closest: tuple, thr: float, margin: float) -> None:
    """Refuse a usable photo whose face is already someone else's, or too close to someone else to tell apart."""
    other, score = closest
    if other is None:
        return
    if score >= thr:
        v.ok, v.message = False, (f"This face matches {shown(other, quote=True)} already (similarity {score:.3f}, "
                                  f"the door opens at {thr:.3f}): is it the right person?")
    elif thr - score < margin:
        v.ok, v.message = False, (f"This face is too close to {shown(other, quote=True)} (similarity {score:.3f}): "
                                  "the door could take one for the other. Use other photos.")


def _stored(out: Enrolled, g, thr: float, margin: float, cohort, store) -> Enrolled:
    """Run ``store()`` (the gallery write: all or nothing) and fill ``out``: what was stored and the person's threshold
    lines, or why nothing was (an :class:`EnrollmentError`'s words)."""
    from edge.people.enroll import threshold_lines

    try:
        out.stored = store()
    except EnrollmentError as exc:
        out.error = f"Nothing stored: {exc}"
        return out
    person = next(p for p in g.people() if p.name == out.name)
    out.lines = threshold_lines(person, thr, cohort, None, margin)
    return out
