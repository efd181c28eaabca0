"""The access decision over several frames. Pure logic: time is passed in, nothing touches hardware.

A frame with a face is an *observation* (best person, score, margin). It *passes* when its score reaches the
threshold and its margin to the second-best person reaches ``min_margin``. The door opens (``grant``) only when
the same person passes in ``n`` of the last ``m`` observations, all within ``window`` seconds; when another person
passes within an attempt (a photo swapped in front of the camera), the count starts again. An *attempt*
is one continuous presence: it ends when no face was observed for ``attempt_gap`` seconds. Every attempt that ends
without a grant is a ``deny``, however short (closed by :meth:`DecisionPolicy.tick` on the frames after it, or by
the next observation); one that reaches ``m`` observations without a grant is denied at once, and continued
presence without a grant is denied again every ``window`` seconds (each counts towards the lockout); a grant can
still follow within the same attempt. Faces are ignored for ``cooldown`` seconds after a
grant for the person just granted (who is still standing there).
An unknown face can never produce a grant: identity None never passes. Nor can a face judged an attack by the
liveness check (``live`` False): it never passes, and when ``n`` such faces are seen within an attempt the attempt
is denied at once with reason ``spoof`` (it counts towards the lockout like any deny). Liveness is judged over the
attempt, not only per frame: given the liveness score and threshold of each face (``Observation.liveness``,
``live_threshold``), a face counts as live only when its own score reaches the threshold *and* the mean log-odds of
the attempt's faces so far does (:func:`live_evidence`): consecutive frames of a screen or a print that flicker
across the threshold do not add up to 3 live frames (README, "Liveness").

**Schedules.** A person may be allowed only in weekly windows or until a date (:mod:`edge.people.schedule`); the
caller passes why not, at the frame's local time, as ``Observation.outside``. Such a face never counts towards a
grant; ``n`` of them in an attempt deny it at once with reason ``schedule: ...`` under the person's name, and these
denials do not count towards the lockout (an enrolled, live person outside their hours is not an attack). An attempt
with fewer of them ends as any other deny and counts: a stranger whose odd frame matches an out-of-hours guest gains
no attempts from it.

**Lockout.** ``lockout_attempts`` denied attempts within ``lockout_window`` seconds start a lockout of
``lockout_base`` seconds, doubling with each further one up to ``lockout_max`` (the back-off *level*). Two things
keep it from locking the owner out for a stranger (threats in README, "Lockout"):

- a denied attempt is *suspect* when it was a presentation attack (reason ``spoof``) or when any of its faces matched
  an enrolled person by recognition alone (a photo or screen of them, a look-alike, the owner on a bad frame); the
  others are *unknown faces*. A lockout whose denials include a suspect one is *strict*: it stops every face, as
  before. A lockout of unknown faces alone (``stranger_margin`` set) stops no face: during it a grant needs
  ``n`` of ``m`` frames passing ``stranger_margin`` above the person's threshold (the margin over others unchanged)
  and no face judged an attack since the attempt began (or was last denied), and its denials keep counting
  (``lockout_attempts`` more start the next, longer, lockout: strict if one of them is suspect);
- the level steps down by one for every ``lockout_decay`` seconds without a denied attempt after the last lockout
  ended (0: never, only a grant resets it).

``stranger_margin`` None and ``lockout_decay`` 0 are the earlier rule (every lockout stops every face; only a grant
resets the back-off). Times are seconds on one clock that never steps (the daemon passes a monotonic clock for
cameras), so a wall-clock change cannot lengthen or shorten a lockout.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Deque, Optional, Tuple


def passes(identity: Optional[str], score: float, margin: float, threshold: float, min_margin: float,
           live: bool, person_threshold: float = float("-inf")) -> bool:
    """The one rule a face must meet to count for a person: the daemon's frames, `doorface identify` and the
    benchmarks all use it. An unknown face (identity None) never passes; neither does a face the liveness check
    judged an attack (``live`` False; True only when liveness passed or was explicitly turned off). The score must
    reach the stricter of the global ``threshold`` and the person's own (``person_threshold``, from
    :mod:`edge.people.cohort`): a per-person threshold can make a person harder to match, never easier."""
    return (live is True and identity is not None and score >= max(threshold, person_threshold)
            and margin >= min_margin)


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
    lockout_decay: float = 0.0                  # quiet seconds that forget one back-off level; 0: never
    stranger_margin: Optional[float] = None     # None: every lockout stops every face (see the module doc)

    def describe_lockout(self) -> str:
        decay = f"one doubling forgotten per {self.lockout_decay:.0f} s without a denial" if self.lockout_decay \
            else "reset only by a grant"
        who = "every lockout stops every face" if self.stranger_margin is None else \
            (f"a lockout of unknown faces alone still opens for an enrolled, live face {self.stranger_margin:.3f} "
             "above its threshold")
        return (f"lockout: {self.lockout_attempts} denied attempts in {self.lockout_window:.0f} s -> "
                f"{self.lockout_base:.0f} s, doubling up to {self.lockout_max:.0f} s, {decay}; {who}")

    def __post_init__(self):
        if not 1 <= self.n <= self.m:
            raise ValueError("need 1 <= n <= m")
        if self.lockout_decay and self.lockout_decay < self.lockout_max:
            raise ValueError("lockout_decay must be 0 or at least lockout_max (else waiting beats the back-off)")


@dataclass(frozen=True)
class Observation:
    t: float
    identity: Optional[str]
    score: float
    margin: float
    live: bool        # the liveness check's call (True when it is explicitly turned off)
    person_threshold: float = float("-inf")   # the best person's own threshold (Match.threshold)
    liveness: Optional[float] = None          # the face's liveness score 0..1 (None: liveness off, or not given)
    live_threshold: Optional[float] = None    # ... and the threshold it is judged against
    outside: Optional[str] = None             # why the best person may not open now (their schedule or expiry);
                                              # None: they may (edge.people.schedule)


def log_odds(p: float) -> float:
    p = min(max(float(p), 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def live_evidence(total: float, count: int, threshold: float) -> bool:
    """The attempt's evidence of a live face: the mean log-odds of its faces' liveness scores reaches the
    threshold's."""
    return count > 0 and total / count >= log_odds(threshold)


@dataclass(frozen=True)
class Decision:
    """``kind`` is one of grant, deny, lockout, and for commands remote_open, remote_rejected (final: logged), or
    pending, cooldown, locked_out (not logged)."""

    kind: str
    identity: Optional[str] = None
    score: float = 0.0
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.kind in ("grant", "deny", "lockout", "remote_open", "remote_rejected")


@dataclass
class DecisionPolicy:
    cfg: PolicyConfig
    _recent: Deque[Observation] = field(default_factory=deque)
    _denials: Deque[Tuple[float, bool]] = field(default_factory=deque)   # (time, suspect) of recent denials
    _cooldown_until: float = float("-inf")
    _cooldown_identity: Optional[str] = None
    _lockout_until: float = float("-inf")
    _lockouts: int = 0                 # the back-off level
    _lockout_strict: bool = True       # the current lockout stops every face (see the module doc)
    _quiet_since: float = float("-inf")  # the back-off decays from here (the last denial or the lockout's end)
    _last_t: Optional[float] = None
    _denied: bool = False
    _last_deny_t: float = float("-inf")
    _open: bool = False                # an attempt with observations, neither granted nor denied yet
    _open_score: float = float("-inf")  # best score of the open attempt
    _seen: int = 0                     # observations since the attempt began or was last denied
    _seen_pass: bool = False           # ... and whether any of them passed
    _seen_spoof: int = 0               # ... and how many were judged attacks by the liveness check
    _seen_match: bool = False          # ... and whether any matched an enrolled person by recognition alone
    _seen_outside: int = 0             # ... and how many passed for a person outside their hours
    _outside: Optional[Observation] = None   # ... the last of those
    _last_identity: Optional[str] = None
    _pending: Optional[Decision] = None  # a deny of an attempt that ended unseen, reported with the next frame
    _live_sum: float = 0.0             # liveness log-odds summed over the attempt's faces ...
    _live_n: int = 0                   # ... and how many

    def passes(self, o: Observation) -> bool:
        return o.outside is None and self.recognised(o)

    def recognised(self, o: Observation) -> bool:
        """The face passes for its person by recognition and liveness, whatever their schedule says."""
        return passes(o.identity, o.score, o.margin, self.cfg.threshold, self.cfg.min_margin, o.live,
                      o.person_threshold)

    def passes_wider(self, o: Observation) -> bool:
        """The rule during a lockout of unknown faces: ``stranger_margin`` above the threshold (global and own)."""
        x = self.cfg.stranger_margin
        return o.outside is None and passes(o.identity, o.score, o.margin, self.cfg.threshold + x,
                                            self.cfg.min_margin, o.live, o.person_threshold + x)

    def locked_out(self, t: float) -> bool:
        """Any lockout is running (remote opens are refused, whatever its kind)."""
        return t < self._lockout_until

    def blocks_faces(self, t: float) -> bool:
        """A lockout that stops every face is running: frames need not even be analysed."""
        return t < self._lockout_until and (self._lockout_strict or self.cfg.stranger_margin is None)

    def count_denial(self, t: float) -> Optional[Decision]:
        """A denial from outside the camera (a remote open with a bad code) counts towards the lockout like a denied
        attempt of an unknown face (not suspect: it says nothing about the faces at the door). The ``lockout`` when
        it starts one, else None. Remote opens are refused during any lockout (:meth:`locked_out`)."""
        c = self.cfg
        self._decay(t)
        self._quiet_since = max(t, self._lockout_until)
        self._denials.append((t, False))
        while self._denials and t - self._denials[0][0] > c.lockout_window:
            self._denials.popleft()
        if len(self._denials) >= c.lockout_attempts:
            return self._lock_out(t, 0.0)
        return None

    def level(self, t: float) -> int:
        """The back-off level at ``t`` (after its decay): the next lockout lasts ``lockout_base * 2 ** level``."""
        self._decay(t)
        return self._lockouts

    def _decay(self, t: float) -> None:
        d = self.cfg.lockout_decay
        if d > 0 and self._lockouts > 0 and t - self._quiet_since >= d:
            steps = int((t - self._quiet_since) // d)
            self._lockouts = max(0, self._lockouts - steps)
            self._quiet_since += steps * d

    def reset(self):
        self._recent.clear()

    def tick(self, t: float) -> Optional[Decision]:
        """Call on every frame (with or without a face): closes an attempt that ended without a grant or a deny
        as a ``deny`` (it counts towards the lockout like any other). None when there is nothing to close."""
        if self._open and self._last_t is not None and t - self._last_t > self.cfg.attempt_gap:
            return self._close_attempt(t)
        return None

    def _close_attempt(self, t: float) -> Optional[Decision]:
        """The open attempt ended: a deny, unless it was already denied less than ``window`` before it ended
        (the tail of one visit is not a second attempt)."""
        if self._denied and self._last_t - self._last_deny_t < self.cfg.window:
            self._open = False
            self._forget_seen()
            return None
        reason = "spoof" if self._seen_spoof >= self.cfg.n else "attempt ended without a grant"
        return self._deny(t, self._open_score, reason)

    def _deny_outside(self, t: float) -> Decision:
        """An enrolled, live person outside their hours (or after their access ended): denied with reason
        ``schedule: ...`` under their name, and not counted towards the lockout (it is no attack, and counting it
        would let a guest's expired access lock the household out)."""
        o = self._outside
        self._open = False
        self._forget_seen()
        self._denied = True
        self._last_deny_t = t
        return Decision("deny", o.identity, o.score, f"schedule: {o.outside}")

    def _forget_seen(self) -> None:
        self._open_score = float("-inf")
        self._seen, self._seen_pass, self._seen_spoof, self._seen_match = 0, False, 0, False
        self._seen_outside, self._outside = 0, None

    def _deny(self, t: float, score: float, reason: str) -> Decision:
        c = self.cfg
        suspect = reason == "spoof" or self._seen_match
        self._open = False
        self._forget_seen()
        self._denied = True
        self._last_deny_t = t
        self._decay(t)
        self._quiet_since = max(t, self._lockout_until)
        self._denials.append((t, suspect))
        while self._denials and t - self._denials[0][0] > c.lockout_window:
            self._denials.popleft()
        if len(self._denials) >= c.lockout_attempts:
            return self._lock_out(t, score)
        return Decision("deny", None, score, reason)

    def _lock_out(self, t: float, score: float) -> Decision:
        c = self.cfg
        self._lockout_strict = c.stranger_margin is None or any(s for _, s in self._denials)
        span = min(c.lockout_base * 2 ** self._lockouts, c.lockout_max)
        self._lockouts += 1
        self._lockout_until = max(self._lockout_until, t + span)
        self._quiet_since = self._lockout_until
        self._denials.clear()
        self._recent.clear()
        what = "" if self._lockout_strict else \
            f", unknown faces only (an enrolled face still opens {c.stranger_margin:.3f} above its threshold)"
        return Decision("lockout", None, score, f"{c.lockout_attempts} denied attempts{what}: {span:.0f}s")

    def _begin_attempt(self) -> Optional[Decision]:
        """A face after a gap: a new attempt. The previous one, if still open, ended unseen by :meth:`tick`: it is
        a deny all the same (kept for the next return), or a lockout (returned now)."""
        c = self.cfg
        closed = self._close_attempt(self._last_t + c.attempt_gap) if self._open else None
        if closed is not None:
            if closed.kind == "lockout":
                return closed
            self._pending = closed
        self._recent.clear()
        self._denied = False
        self._last_deny_t = float("-inf")
        self._last_identity = None
        self._live_sum, self._live_n = 0.0, 0
        return None

    def _with_evidence(self, o: Observation) -> Observation:
        """``o`` counting as live only if its own score and the attempt's evidence so far both say live."""
        if o.liveness is None or o.live_threshold is None:
            return o
        self._live_sum += log_odds(o.liveness)
        self._live_n += 1
        if o.live and not live_evidence(self._live_sum, self._live_n, o.live_threshold):
            return replace(o, live=False)
        return o

    def _grant(self, t: float, who: str, count: int, wider: bool = False) -> Decision:
        rule = self.passes_wider if wider else self.passes
        score = max(r.score for r in self._recent if r.identity == who and rule(r))
        self._recent.clear()
        self._denials.clear()
        self._denied = False
        self._open = False
        self._forget_seen()
        self._live_sum, self._live_n = 0.0, 0
        self._lockouts = 0
        self._cooldown_until = t + self.cfg.cooldown
        self._cooldown_identity = who
        how = f", {self.cfg.stranger_margin:.3f} above the threshold during a lockout" if wider else ""
        return Decision("grant", who, score, f"{count} of last {self.cfg.m} frames{how}")

    def observe(self, o: Observation) -> Decision:
        c = self.cfg
        if self.blocks_faces(o.t):
            return Decision("locked_out", reason=f"lockout for {self._lockout_until - o.t:.0f}s more")
        if self._last_t is None or o.t - self._last_t > c.attempt_gap:  # a new attempt
            closed = self._begin_attempt()
            if closed is not None:
                self._last_t = o.t
                return closed
        self._last_t = o.t
        o = self._with_evidence(o)
        if self.passes(o) and o.identity != self._last_identity:
            # Another person passes (or a photo was swapped in): the count starts here. A frame that passes for
            # nobody (blur, a turned head) does not reset it.
            self._recent.clear()
            self._last_identity = o.identity
        if o.t < self._cooldown_until and o.identity == self._cooldown_identity and self.passes(o):
            self._open = False
            return Decision("cooldown", o.identity, o.score, "cooldown after grant")
        self._open = True
        self._open_score = max(self._open_score, o.score)
        self._seen += 1
        self._seen_pass = self._seen_pass or self.passes(o)
        self._seen_spoof += 0 if o.live else 1
        if o.outside is not None and self.recognised(o):
            self._seen_outside += 1
            self._outside = o
        self._seen_match = self._seen_match or passes(o.identity, o.score, o.margin, c.threshold, c.min_margin, True,
                                                      o.person_threshold)
        while self._recent and o.t - self._recent[0].t > c.window:
            self._recent.popleft()
        self._recent.append(o)
        while len(self._recent) > c.m:
            self._recent.popleft()
        granted = self._vote(o.t)
        if granted is not None:
            return granted
        if self._seen_outside >= c.n and not self._seen_spoof and o.t - self._last_deny_t >= c.window:
            return self._deny_outside(o.t)
        if self._seen_spoof >= c.n and o.t - self._last_deny_t >= c.window:
            # n faces judged attacks (a photo or a screen held up): denied at once, and counted for the lockout.
            return self._deny(o.t, self._open_score, "spoof")
        if self._seen >= c.m and o.t - self._last_deny_t >= c.window:
            # m faces without a grant (whoever they matched, however the best match changed): an attempt denied.
            reason = "not enough agreeing frames" if self._seen_pass else "unknown face"
            if self._denied:
                reason += " (still there)"
            return self._deny(o.t, self._open_score, reason)
        if self._pending is not None:   # the deny of the attempt that ended before this face appeared
            pending, self._pending = self._pending, None
            return pending
        wider = " (lockout: wider margin)" if self.locked_out(o.t) else ""
        return Decision("pending", o.identity, o.score, f"{len(self._recent)} of {c.m} frames{wider}")

    def _vote(self, t: float) -> Optional[Decision]:
        """A grant when one person passes in ``n`` of the recent frames; during a lockout of unknown faces only by
        the wider rule, and only when no face of the attempt was judged an attack."""
        wider = self.locked_out(t)
        if wider and self._seen_spoof:
            return None
        rule = self.passes_wider if wider else self.passes
        votes = {}
        for r in self._recent:
            if rule(r):
                votes[r.identity] = votes.get(r.identity, 0) + 1
        if votes:
            who, count = max(votes.items(), key=lambda kv: kv[1])
            if count >= self.cfg.n:
                return self._grant(t, who, count, wider)
        return None
