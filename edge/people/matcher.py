"""Matching an embedding against the gallery: cosine similarity, best person, and margin to the closest other face
it could be: the second-best enrolled person or, given a stranger cohort, its closest strangers
(:func:`edge.people.cohort.crowding`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from edge.people.cohort import crowding


@dataclass(frozen=True)
class Match:
    identity: Optional[str]   # best person, or None when the gallery is empty
    score: float              # cosine similarity to that person's closest template
    second: Optional[str]
    second_score: float
    margin: float             # score - max(second_score, crowd) (score + 1 with one person and no cohort)
    threshold: float = float("-inf")   # the best person's own threshold (edge.people.cohort); -inf when not calibrated
    crowd: float = float("-inf")       # mean similarity of the face to its closest cohort strangers; -inf: no cohort


class TemplateIndex:
    """Templates as one (N, D) float32 matrix with a person index per row; person score = max over templates.
    ``thresholds``: each calibrated person's own threshold (reported in :attr:`Match.threshold`). ``strangers``
    (M x D, unit length, a cohort's embeddings) and ``stranger_k`` > 0: the margin is also taken over the mean of
    the face's ``stranger_k`` closest strangers (:attr:`Match.crowd`). ``access``: each restricted person's
    :class:`edge.people.schedule.Access` (:meth:`outside_hours`)."""

    def __init__(self, embeddings: np.ndarray, names: Sequence[str],
                 thresholds: Optional[Mapping[str, float]] = None, strangers: Optional[np.ndarray] = None,
                 stranger_k: int = 0, access: Optional[Mapping[str, object]] = None):
        self.embeddings = np.asarray(embeddings, np.float32).reshape(len(names), -1) if len(names) else \
            np.zeros((0, 0), np.float32)
        self.people = sorted(set(names))
        pid = {n: i for i, n in enumerate(self.people)}
        self.row_person = np.array([pid[n] for n in names], dtype=np.int64)
        self.thresholds = dict(thresholds or {})
        self.access = dict(access or {})      # name -> edge.people.schedule.Access, for the restricted ones
        self.strangers = None if strangers is None or not stranger_k else np.asarray(strangers, np.float32)
        self.stranger_k = int(stranger_k) if self.strangers is not None else 0

    def with_strangers(self, strangers: np.ndarray, stranger_k: int) -> "TemplateIndex":
        """The same templates and thresholds, the margin also taken over ``stranger_k`` closest ``strangers``."""
        return TemplateIndex(self.embeddings, [self.people[i] for i in self.row_person], self.thresholds,
                             strangers, stranger_k, self.access)

    def outside_hours(self, name: Optional[str], when) -> Optional[str]:
        """Why ``name`` may not open at ``when`` (a local ``datetime``: their schedule or expiry), or None."""
        a = self.access.get(name) if name is not None else None
        return None if a is None else a.allows(when)

    def __len__(self):
        return len(self.row_person)

    def match(self, emb: np.ndarray) -> Match:
        if not len(self):
            return Match(None, -1.0, None, -1.0, 0.0)
        sims = self.embeddings @ np.asarray(emb, np.float32)
        per_person = np.full(len(self.people), -1.0, np.float32)
        np.maximum.at(per_person, self.row_person, sims)
        order = np.argsort(-per_person)
        best = int(order[0])
        score = float(per_person[best])
        crowd = float("-inf")
        if self.strangers is not None:
            crowd = crowding(np.asarray(emb, np.float32), self.strangers, self.stranger_k)
        if len(order) > 1:
            sec = int(order[1])
            closest = max(float(per_person[sec]), crowd)
            return Match(self.people[best], score, self.people[sec], float(per_person[sec]), score - closest,
                         self._threshold(best), crowd)
        margin = score - crowd if np.isfinite(crowd) else score + 1.0
        return Match(self.people[best], score, None, -1.0, margin, self._threshold(best), crowd)

    def _threshold(self, person: int) -> float:
        t = self.thresholds.get(self.people[person])
        return float("-inf") if t is None else float(t)
