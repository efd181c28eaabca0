import pytest

from edge.door.decision import DecisionPolicy, Observation, PolicyConfig


def policy(**kw):
    base = dict(threshold=0.5, min_margin=0.1, n=3, m=5, window=3.0, attempt_gap=1.5, cooldown=5.0,
                lockout_attempts=3, lockout_window=60.0, lockout_base=30.0, lockout_max=100.0)
    base.update(kw)
    return DecisionPolicy(PolicyConfig(**base))


def feed(p, items, t0=0.0, dt=0.1):
    out = []
    for i, item in enumerate(items):
        who, score, margin = item[:3]
        live = item[3] if len(item) > 3 else True
        out.append(p.observe(Observation(t0 + i * dt, who, score, margin, live)))
    return out


def kinds(decisions):
    return [d.kind for d in decisions]


def test_grant_needs_n_of_m_same_person():
    p = policy()
    ds = feed(p, [("ann", 0.8, 0.5), ("ann", 0.3, 0.5), ("ann", 0.8, 0.5), ("ann", 0.9, 0.5)])
    assert kinds(ds) == ["pending", "pending", "pending", "grant"]
    assert ds[-1].identity == "ann" and ds[-1].score == pytest.approx(0.9)


def test_two_people_alternating_never_reach_n():
    p = policy()
    ds = feed(p, [("ann", 0.9, 0.5), ("bob", 0.9, 0.5)] * 2 + [("ann", 0.2, 0.5)])
    assert "grant" not in kinds(ds)
    assert ds[-1].kind == "deny" and ds[-1].reason == "not enough agreeing frames"


def test_low_margin_never_passes():
    p = policy()
    ds = feed(p, [("ann", 0.95, 0.05)] * 10)
    assert "grant" not in kinds(ds)
    assert kinds(ds).count("deny") == 1  # one deny per attempt


def test_unknown_face_never_opens():
    p = policy(threshold=-1.0, min_margin=0.0)   # even with a threshold everything passes
    ds = feed(p, [(None, 1.0, 2.0)] * 20)
    assert "grant" not in kinds(ds)


def test_frames_outside_window_do_not_count():
    p = policy(window=0.5, attempt_gap=10)
    ds = feed(p, [("ann", 0.9, 0.5)] * 3, dt=0.4)   # 3 passing frames spread over 0.8 s > window
    assert "grant" not in kinds(ds)


def test_cooldown_ignores_the_granted_person_only():
    p = policy()
    ds = feed(p, [("ann", 0.9, 0.5)] * 3)
    assert ds[-1].kind == "grant"
    more = feed(p, [("ann", 0.9, 0.5)] * 5, t0=0.5)
    assert set(kinds(more)) == {"cooldown"}
    other = feed(p, [("bob", 0.9, 0.5)] * 3, t0=1.0)
    assert other[-1].kind == "grant" and other[-1].identity == "bob"
    after = feed(p, [("ann", 0.9, 0.5)] * 3, t0=6.0)  # cooldown over
    assert after[-1].kind == "grant"


def test_new_attempt_after_a_gap():
    p = policy()
    first = feed(p, [(None, 0.1, 0.0)] * 6)
    second = feed(p, [(None, 0.1, 0.0)] * 6, t0=10.0)
    assert kinds(first).count("deny") == 1 and kinds(second).count("deny") == 1


def test_lockout_after_k_denied_attempts_with_growing_backoff():
    p = policy(lockout_attempts=3, lockout_base=30.0)
    t = 0.0
    decisions = []
    for attempt in range(3):
        decisions += feed(p, [(None, 0.1, 0.0)] * 5, t0=t)
        t += 5.0
    assert [d.kind for d in decisions if d.final] == ["deny", "deny", "lockout"]
    lock_t = 4 * 0.1 + 10.0
    assert p.locked_out(lock_t + 29.0) and not p.locked_out(lock_t + 31.0)
    # While locked out, even the right person is ignored.
    assert feed(p, [("ann", 0.9, 0.5)] * 3, t0=lock_t + 1)[-1].kind == "locked_out"
    # Second lockout lasts twice as long (30 -> 60 s).
    t = lock_t + 31.0
    decisions = []
    for attempt in range(3):
        decisions += feed(p, [(None, 0.1, 0.0)] * 5, t0=t)
        t += 5.0
    assert decisions[-1].kind == "lockout" and "60s" in decisions[-1].reason


def test_lockout_is_capped():
    p = policy(lockout_attempts=1, lockout_base=60.0, lockout_max=100.0)
    t = 0.0
    spans = []
    for _ in range(3):
        d = feed(p, [(None, 0.1, 0.0)] * 5, t0=t)[-1]
        assert d.kind == "lockout"
        spans.append(d.reason)
        t += 200.0
    assert spans[-1].endswith("100s")


def test_config_rejects_n_above_m():
    with pytest.raises(ValueError):
        PolicyConfig(threshold=0.5, n=6, m=5)


def test_short_visits_are_attempts_and_lock_out():
    """The tester's walk-around: 30 visits of 0.4 s over 73 s gave 0 denies. Every visit is an attempt now."""
    p = policy(lockout_attempts=5, lockout_window=60.0)
    finals = []
    t = 0.0
    for visit in range(30):
        for d in feed(p, [(None, 0.2, 0.0)] * 4, t0=t, dt=0.1):      # 0.4 s: never m = 5 frames
            finals.append(d)
        t += 2.43
        d = p.tick(t)                                                 # frames without a face after the visit
        if d is not None:
            finals.append(d)
    kinds_ = [d.kind for d in finals if d.final]
    assert kinds_[:5] == ["deny", "deny", "deny", "deny", "lockout"]
    assert all(d.reason == "attempt ended without a grant" for d in finals if d.kind == "deny")


def test_continuous_presence_is_denied_again_and_again():
    """70 s of continuous presence gave 1 deny; now one deny per window of presence, and a lockout."""
    p = policy(lockout_attempts=5, window=3.0)
    ds = feed(p, [(None, 0.2, 0.0)] * 700, dt=0.1)
    finals = [d.kind for d in ds if d.final]
    assert finals[:5] == ["deny"] * 4 + ["lockout"]


def test_a_swapped_photo_must_earn_its_frames_from_scratch():
    """A deny, then an owner's photo swapped in with no gap: votes count only from the swap, and a change of the
    best match in between restarts them."""
    p = policy(n=3, m=5)
    ds = feed(p, [("ann", 0.9, 0.5), ("ann", 0.9, 0.5), ("eve", 0.9, 0.5), ("ann", 0.9, 0.5), ("eve", 0.9, 0.5)])
    assert "grant" not in kinds(ds)         # 3 of ann in the last 5, but never 3 without another match between
    assert ds[-1].kind == "deny"
    ds = feed(p, [("ann", 0.9, 0.5)] * 3, t0=0.5)
    assert kinds(ds) == ["pending", "pending", "grant"]


def test_an_attempt_ended_unseen_is_denied_with_the_next_face():
    p = policy()
    feed(p, [(None, 0.2, 0.0)] * 2)
    ds = feed(p, [(None, 0.2, 0.0)], t0=10.0)         # no tick() in between (e.g. no frames): still counted
    assert ds[0].kind == "deny" and ds[0].reason == "attempt ended without a grant"


def test_the_tail_of_a_denied_visit_is_not_a_second_attempt():
    p = policy(window=3.0)
    ds = feed(p, [(None, 0.2, 0.0)] * 8)          # denied at frame 5, then 3 more frames of the same visit
    assert [d.kind for d in ds if d.final] == ["deny"]
    assert p.tick(5.0) is None                     # the visit ends: nothing more to count
