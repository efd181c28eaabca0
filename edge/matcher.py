"""Matching an embedding against the gallery: cosine similarity, best person, and margin to the second best."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Match:
    identity: Optional[str]   # best person, or None when the gallery is empty
    score: float              # cosine similarity to that person's closest template
    second: Optional[str]
    second_score: float
    margin: float             # score - second_score (score itself when there is only one person)
    threshold: float = float("-inf")   # the best person's own threshold (edge.cohort); -inf when not calibrated


class TemplateIndex:
    """Templates as one (N, D) float32 matrix with a person index per row; person score = max over templates.
    ``thresholds``: each calibrated person's own threshold (reported in :attr:`Match.threshold`)."""

    def __init__(self, embeddings: np.ndarray, names: Sequence[str],
                 thresholds: Optional[Mapping[str, float]] = None):
        self.embeddings = np.asarray(embeddings, np.float32).reshape(len(names), -1) if len(names) else \
            np.zeros((0, 0), np.float32)
        self.people = sorted(set(names))
        pid = {n: i for i, n in enumerate(self.people)}
        self.row_person = np.array([pid[n] for n in names], dtype=np.int64)
        self.thresholds = dict(thresholds or {})

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
        if len(order) > 1:
            sec = int(order[1])
            return Match(self.people[best], score, self.people[sec], float(per_person[sec]),
                         score - float(per_person[sec]), self._threshold(best))
        return Match(self.people[best], score, None, -1.0, score + 1.0, self._threshold(best))

    def _threshold(self, person: int) -> float:
        t = self.thresholds.get(self.people[person])
        return float("-inf") if t is None else float(t)
