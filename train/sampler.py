"""Identity-balanced batches: P identities x K images each, plus people with one image as extra negatives."""
from __future__ import annotations

from typing import Iterator

import numpy as np


class PKSampler:
    """Yields index arrays of ``P*K + singletons`` items.

    Identities with at least two images fill the P slots (an identity with fewer than K images is sampled with
    replacement; augmentation makes the copies differ). Identities with one image cannot be anchors with a
    positive, so they only join as negatives. Epochs walk the identities in a fresh shuffled order.
    """

    def __init__(self, labels, p: int = 32, k: int = 4, singletons: int = 0, seed: int = 0):
        self.labels = np.asarray(labels)
        self.p, self.k, self.singletons = int(p), int(k), int(singletons)
        self.rng = np.random.default_rng(seed)
        by_label = {}
        for i, lab in enumerate(self.labels):
            by_label.setdefault(int(lab), []).append(i)
        self.multi = [np.array(v) for v in by_label.values() if len(v) >= 2]
        self.single = np.array([v[0] for v in by_label.values() if len(v) == 1], dtype=int)
        if len(self.multi) < self.p:
            raise ValueError(f"need at least P={self.p} identities with 2+ images, have {len(self.multi)}")
        self._order = []

    @property
    def batch_size(self) -> int:
        return self.p * self.k + (self.singletons if len(self.single) else 0)

    def _next_identities(self):
        out = []
        while len(out) < self.p:
            if not self._order:
                self._order = list(self.rng.permutation(len(self.multi)))
            ident = self._order.pop()
            if ident not in out:
                out.append(ident)
        return out

    def batch(self) -> np.ndarray:
        idx = []
        for ident in self._next_identities():
            members = self.multi[ident]
            replace = len(members) < self.k
            idx.extend(self.rng.choice(members, self.k, replace=replace))
        if self.singletons and len(self.single):
            idx.extend(self.rng.choice(self.single, min(self.singletons, len(self.single)), replace=False))
        return np.asarray(idx, dtype=np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.batch()
