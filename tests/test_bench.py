"""The benchmark code on a tiny input (the real run is `make bench`, never part of the tests)."""
import json

import numpy as np
import pytest

from bench import accuracy as A


def test_open_set_counts_strangers_and_rejections():
    persons = np.array(["a", "a", "a", "b", "b", "c", "d"])
    # Perfect embeddings: one direction per person.
    dirs = {p: np.eye(8)[i] for i, p in enumerate("abcd")}
    emb = np.stack([dirs[p] for p in persons]).astype(np.float32)
    sim = A.similarity(emb, np.ones(len(persons), bool), "cosine")
    o = A.open_set(sim, persons, threshold=0.5)
    assert o["enrolled_people"] == 1 and o["false_accept_rate"] == 0 and o["false_reject_rate"] == 0
    o = A.open_set(sim, persons, threshold=-2.0)        # accept anything: every stranger gets in
    assert o["false_accept_rate"] == 1.0


def test_missing_faces_are_rejected():
    emb = np.eye(4, dtype=np.float32)
    ok = np.array([True, True, False, True])
    sim = A.similarity(emb, ok, "euclidean")
    assert np.isneginf(sim[2]).all() and np.isneginf(sim[:, 2]).all() and sim[0, 0] == 0


def test_quick_benchmark_writes_report(tmp_path, shipped_model, port_model, detector_path, samples):
    pytest.importorskip("matplotlib", reason="matplotlib (the train extra) is not installed: the report's plots need it")
    import subprocess
    import sys

    from conftest import ROOT

    md = tmp_path / "B.md"
    r = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--md", str(md),
                        "--model", f"small={shipped_model}", "--model", f"port={port_model}",
                        "--detector", str(detector_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())
    for label in ("small", "port"):
        d1 = next(s for s in res["speed"] if s["engine"] == label and s["threads"] == 1)
        assert d1["fps"] > 0 and d1["ms"]["embed"] > 0 and not d1["tensorflow_imported"]
    assert [s["templates"] for s in res["scaling"]] == [10, 100]
    text = md.read_text()
    assert "## Speed" in text and "## Gallery scaling" in text and "| | small | port |" in text
    for png in ("speed.png", "scaling.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_bench_model_table_is_written_and_replaced(tmp_path, shipped_model):
    from bench.model import main as bench_model

    md = tmp_path / "B.md"
    md.write_text("# doorface benchmarks\n\nkept\n")
    for _ in range(2):   # the second run replaces the section, it does not append another
        assert bench_model(["--models", str(shipped_model), "--threads", "1", "--iters", "5",
                            "--out", str(tmp_path / "out"), "--md", str(md)]) == 0
    text = md.read_text()
    assert text.count("## Model variants") == 1 and "kept" in text
    row = json.loads((tmp_path / "out" / "model.json").read_text())["rows"][0]
    assert row["threads"] == 1 and row["ms"] > 0 and row["quantization"] == "int8" and row["flip_average"]


def test_fair_group_rates_count_comparisons_and_the_rule():
    from bench.fair import group_rates, splits_of, summed

    # 3 strangers x 2 enrolled people; stranger 0 looks like person 0 (0.9), stranger 1 a little (0.6).
    s = np.array([[0.9, 0.1], [0.6, 0.1], [0.1, 0.1]])
    r = group_rates(s, threshold=0.5, margin=0.0)
    assert r == {"comparisons": 6, "false_accepts": 2, "near_same": 0, "stranger_probes": 3, "strangers_let_in": 2}
    # A pair marked as probably one person is still a false accept, and is also counted apart.
    assert group_rates(s, 0.5, 0.0, near_same=s > 0.8)["near_same"] == 1
    assert group_rates(s, threshold=0.5, margin=0.55)["strangers_let_in"] == 1      # the margin rule
    # Person 0's own threshold (0.95) is stricter than the global one: nobody gets in as them any more; an own
    # threshold below the global one changes nothing (never looser).
    assert group_rates(s, 0.5, 0.0, own=np.array([0.95, 0.0]))["false_accepts"] == 0
    assert group_rates(s, 0.5, 0.0, own=np.array([0.2, 0.2])) == r
    # Stranger 0 also looks like the cohort's strangers (0.88): with a margin of 0.05 over them, neither their
    # comparison nor their photo counts; stranger 1 (0.6, strangers at 0.3) still does.
    c = group_rates(s, 0.5, 0.05, crowd=np.array([0.88, 0.3, 0.3]))
    assert c["false_accepts"] == 1 and c["strangers_let_in"] == 1
    # The pairs behind the counts (to look at): the same comparisons group_rates counts.
    from bench.fair import false_accept_pairs

    assert false_accept_pairs(s, 0.5, 0.05, crowd=np.array([0.88, 0.3, 0.3])) == [(1, 0, 0.6)]
    assert len(false_accept_pairs(s, 0.5, 0.0)) == r["false_accepts"]
    t = summed([r, r])
    assert t["comparisons"] == 12 and t["far"] == pytest.approx(2 / 6) and t["let_in_rate"] == pytest.approx(2 / 3)
    assert t["far_without_near_same"] == t["far"]
    # Splits: cohort, enrolled and strangers are disjoint within a group, and every split draws afresh.
    sp = splits_of({"a": 30, "b": 25}, cohort_per=10, enrolled=3, strangers=12, splits=2)
    for one in sp:
        for g, (c, e, st) in one.items():
            assert len(c) == 10 and len(e) == 3 and len(set(c) | set(e) | set(st)) == len(c) + len(e) + len(st)
    assert len(sp[0]["a"][2]) == 12 and len(sp[0]["b"][2]) == 12
    assert not np.array_equal(sp[0]["a"][1], sp[1]["a"][1])


def test_fair_reads_the_archive_layout(tmp_path):
    import io
    import tarfile

    import cv2

    from bench.fair import load_chips

    ok, jpg = cv2.imencode(".jpg", np.full((20, 20, 3), 128, np.uint8))
    tgz = tmp_path / "u.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name in ("utkface-dev/white/30_0_0_1.jpg.chip.jpg", "utkface-dev/asian/40_1_2_2.jpg.chip.jpg",
                     "utkface-dev/asian/41_1_2_3.jpg.chip.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(jpg.tobytes())
            tar.addfile(info, io.BytesIO(jpg.tobytes()))
    chips = load_chips(tgz)
    assert [len(chips[g]) for g in ("white", "black", "asian", "indian")] == [1, 0, 2, 0]
    assert chips["asian"][0][1].shape == (20, 20, 3)


def test_open_set_runs_sum_the_enrolments():
    persons = np.array(list("aabbccddeeff"))
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(persons), 8)).astype(np.float32)
    sim = A.similarity(emb, np.ones(len(persons), bool), "cosine")
    runs = [A.open_set(sim, persons, 0.3, 0.0, seed) for seed in range(3)]
    tot = A.open_set_runs(sim, persons, 0.3, 0.0, seeds=3)
    assert tot["stranger_probes"] == sum(r["stranger_probes"] for r in runs)
    assert tot["strangers_accepted"] == sum(r["strangers_accepted"] for r in runs)
    assert tot["false_accept_rate"] == tot["strangers_accepted"] / tot["stranger_probes"]


def test_liveness_metrics_follow_iso_30107_3():
    """APCER = attacks accepted as live, BPCER = live faces rejected, at the threshold; AUC with ties at half."""
    from bench.liveness import pad_metrics, roc_auc

    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1]
    m = pad_metrics(labels, scores, 0.5)
    assert m["apcer"] == 0.25 and m["bpcer"] == 0.25 and m["live"] == 4 and m["attacks"] == 4
    assert roc_auc(labels, scores) == 14 / 16     # 0.6 and 0.4 lose to the 0.7 attack
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    # BPCER 10% of 4 live faces: no live face may be rejected, so the threshold is the lowest live score (0.4).
    assert m["threshold_at_bpcer_10"] == 0.4 and m["apcer_at_bpcer_10"] == 0.25


def test_calibration_own_rates_count_only_strangers_and_z_hits_the_target():
    from bench.calibration import fit_z, own_rates

    # 3 photos x 2 people; photo 0 is person 0's, photos 1-2 are person 1's.
    sim = np.array([[1.0, 0.7], [0.8, 1.0], [0.2, 0.9]])
    stranger = np.array([[False, True], [True, False], [True, False]])
    pooled, per = own_rates(sim, stranger, np.array([0.75, 0.75]))
    assert per.tolist() == [0.5, 0.0] and pooled == 1 / 3   # person 0: one of two strangers; person 1: none of one
    rng = np.random.default_rng(0)
    S = rng.normal(size=(400, 50))
    st = np.ones_like(S, bool)
    z = fit_z(S, st, np.zeros(50), np.ones(50), 0.01)
    assert abs(own_rates(S, st, np.full(50, z))[0] - 0.01) < 0.001 and 2.0 < z < 2.7   # about the normal's 2.33


def test_fair_pairs_sheet_shows_each_false_accept_pair(tmp_path):
    import cv2

    from bench.fair import pairs_sheet

    rng = np.random.default_rng(0)
    chips = {"asian": [(f"{i}.jpg", rng.integers(0, 255, (200, 200, 3), np.uint8)) for i in range(4)]}
    pairs_sheet(chips, [("asian", 0, 0, 1, 0.97), ("asian", 3, 2, 3, 0.96)], tmp_path / "s.png", size=50, per_row=4)
    img = cv2.imread(str(tmp_path / "s.png"))
    assert img.shape == (50 + 18, 4 * 100, 3)          # two pairs and two blank tiles in one row
    pairs_sheet(chips, [], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_liveness_attack_sheet_draws_attacks_highest_score_first(tmp_path):
    import cv2

    from bench.liveness import attack_sheet

    def img(v):
        return np.full((60, 60, 3), v, np.uint8)

    rows = [("a", 0, "", img(10)), ("b", 0, "", img(200)), ("c", 1, "", img(90)), ("d", 0, "", img(50))]
    scores = [0.2, 0.9, 0.99, None]               # a live face and an attack without a face are not drawn
    assert attack_sheet(rows, scores, 0.5, tmp_path / "s.png", size=40, per_row=3) == 2
    sheet = cv2.imread(str(tmp_path / "s.png"))
    assert sheet.shape == (40, 3 * 40, 3)
    first, second = sheet[30:, 30:40], sheet[30:, 70:80]  # corners below the label: the images themselves
    assert first.mean() > 150 and second.mean() < 30      # 0.9 before 0.2
    assert sheet[:, 80:].max() == 0                       # the blank tile filling the row
    assert attack_sheet(rows[2:3], scores[2:3], 0.5, tmp_path / "none.png") == 0
    assert not (tmp_path / "none.png").exists()


def test_liveness_readings_combine_the_two_models():
    from bench.liveness import combine

    p = np.array([[0.9, 0.5]])                       # live probability of the first and the second model
    assert combine(p, "mean") == pytest.approx(0.7)
    assert combine(p, "first") == pytest.approx(0.9) and combine(p, "second") == pytest.approx(0.5)
    # log-odds: ln 9 and 0 average to ln 3, probability 0.75; mirrored copies are rows, averaged alike
    assert combine(p, "logodds") == pytest.approx(0.75)
    assert combine(np.array([[0.9, 0.5], [0.7, 0.3]]), "mean") == pytest.approx(0.6)


def test_doorloop_ratios_are_against_the_same_runs_baseline():
    from bench.doorloop import VARIANTS, md_section, summary

    res = summary({VARIANTS[0]: [10.0, 12.0, 11.0], VARIANTS[2]: [11.0, 13.0, 12.1]})
    assert res[VARIANTS[0]]["loop_speed"] == 1.0
    assert res[VARIANTS[2]]["cpu_ms_per_frame"] == 12.1
    assert res[VARIANTS[2]]["loop_speed"] == round(11.0 / 12.1, 3)
    md = md_section(res, {"date": "d", "machine": "m", "frames": 20, "rounds": 3})
    assert "**0.909x**" in md and md.startswith("<!-- bench.doorloop:begin -->")


def test_estimators_are_fitted_to_the_pooled_target_and_shipped_one_is_the_codes():
    from bench.estimators import fit, pair_rule, sorted_scores, template_rule
    from edge.people.cohort import calibrate

    rng = np.random.default_rng(0)
    C = rng.normal(size=(80, 16))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    T = rng.normal(size=(30, 16))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    st = sorted_scores(T, C)
    assert np.all(np.diff(st, axis=1) <= 0)
    # the "normal" estimator is the door's own calibrate(), z for z
    own = template_rule("normal", None)(st, 3.0)
    assert np.allclose(own, [calibrate(t[None], C, 3.0) for t in T], atol=1e-6)
    # symmax is at least each side's normal tail
    sp = sorted_scores(T[:10], C)
    g = pair_rule("symmax", None)(sp, st, 2.0)
    assert g.shape == (10, 30) and np.all(g >= template_rule("normal", None)(st, 2.0)[None] - 1e-12)
    # fit: the pooled stranger rate against the own thresholds lands on the target
    S = rng.uniform(-1, 1, size=(200, 30))
    stranger = np.ones_like(S, bool)
    p = fit(pair_rule("normal", None), S, stranger, sorted_scores(rng.normal(size=(200, 16)), C), st, far=0.05)
    rate = ((S >= pair_rule("normal", None)(np.zeros((200, 1)), st, p)) & stranger).mean()
    assert abs(rate - 0.05) < 0.01
