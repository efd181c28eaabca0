"""The access decision over several frames. Pure logic: time is passed in, nothing touches hardware.

A frame with a face is an *observation* (best person, score, margin). It *passes* when its score reaches the
threshold and its margin to the second-best person reaches ``min_margin``. The door opens (``grant``) only when
the same person passes in ``n`` of the last ``m`` observations, all within ``window`` seconds. An *attempt* is one
continuous presence: it ends when no face was observed for ``attempt_gap`` seconds. An attempt that reaches ``m``
observations without a grant is denied once (``deny``); a grant can still follow within the same attempt. Faces are ignored for ``cooldown`` seconds after a
grant for the person just granted (who is still standing there), and after ``lockout_attempts`` denied attempts within
``lockout_window`` seconds, for a back-off that doubles each time (``lockout_base`` up to ``lockout_max``).
An unknown face can never produce a grant: identity None never passes.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Optional


@dataclass(frozen=True)
class PolicyConfig:
    threshold: float
    min_margin: float = 0.05
    n: int = 3
    m: int = 5
    window: float = 3.0
    attempt_gap: float = 1.5
    cooldown: float = 5.0
    lockout_attempts: int = 5
    lockout_window: float = 60.0
    lockout_base: float = 30.0
    lockout_max: float = 900.0

    def __post_init__(self):
        if not 1 <= self.n <= self.m:
            raise ValueError("need 1 <= n <= m")


@dataclass(frozen=True)
class Observation:
    t: float
    identity: Optional[str]
    score: float
    margin: float


@dataclass(frozen=True)
class Decision:
    """``kind`` is one of grant, deny, lockout (logged), or pending, cooldown, locked_out (not logged)."""

    kind: str
    identity: Optional[str] = None
    score: float = 0.0
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.kind in ("grant", "deny", "lockout")


@dataclass
class DecisionPolicy:
    cfg: PolicyConfig
    _recent: Deque[Observation] = field(default_factory=deque)
    _denials: Deque[float] = field(default_factory=deque)
    _cooldown_until: float = float("-inf")
    _cooldown_identity: Optional[str] = None
    _lockout_until: float = float("-inf")
    _lockouts: int = 0
    _last_t: Optional[float] = None
    _denied: bool = False

    def passes(self, o: Observation) -> bool:
        return o.identity is not None and o.score >= self.cfg.threshold and o.margin >= self.cfg.min_margin

    def locked_out(self, t: float) -> bool:
        return t < self._lockout_until

    def reset(self):
        self._recent.clear()

    def observe(self, o: Observation) -> Decision:
        c = self.cfg
        if o.t < self._lockout_until:
            return Decision("locked_out", reason=f"lockout for {self._lockout_until - o.t:.0f}s more")
        if self._last_t is None or o.t - self._last_t > c.attempt_gap:  # a new attempt
            self._recent.clear()
            self._denied = False
        self._last_t = o.t
        if o.t < self._cooldown_until and o.identity == self._cooldown_identity and self.passes(o):
            return Decision("cooldown", o.identity, o.score, "cooldown after grant")
        while self._recent and o.t - self._recent[0].t > c.window:
            self._recent.popleft()
        self._recent.append(o)
        while len(self._recent) > c.m:
            self._recent.popleft()
        votes = {}
        for r in self._recent:
            if self.passes(r):
                votes[r.identity] = votes.get(r.identity, 0) + 1
        if votes:
            who, count = max(votes.items(), key=lambda kv: kv[1])
            if count >= c.n:
                score = max(r.score for r in self._recent if r.identity == who and self.passes(r))
                self._recent.clear()
                self._denials.clear()
                self._denied = False
                self._lockouts = 0
                self._cooldown_until = o.t + c.cooldown
                self._cooldown_identity = who
                return Decision("grant", who, score, f"{count} of last {c.m} frames")
        if len(self._recent) >= c.m and not self._denied:
            best = max(self._recent, key=lambda r: r.score)
            reason = "unknown face" if not any(self.passes(r) for r in self._recent) else "not enough agreeing frames"
            self._denied = True
            self._denials.append(o.t)
            while self._denials and o.t - self._denials[0] > c.lockout_window:
                self._denials.popleft()
            if len(self._denials) >= c.lockout_attempts:
                self._lockouts += 1
                span = min(c.lockout_base * 2 ** (self._lockouts - 1), c.lockout_max)
                self._lockout_until = o.t + span
                self._denials.clear()
                return Decision("lockout", None, best.score, f"{c.lockout_attempts} denied attempts: {span:.0f}s")
            return Decision("deny", None, best.score, reason)
        return Decision("pending", o.identity, o.score, f"{len(self._recent)} of {c.m} frames")
