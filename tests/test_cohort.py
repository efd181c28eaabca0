"""Per-person thresholds against a stranger cohort (edge.people.cohort): the calibration, the cohort file, the gallery's
stored thresholds, the decision rule (never looser than the global threshold) and the `doorface cohort` commands."""
import sqlite3

import cv2
import numpy as np
import pytest

from conftest import ROOT, door_config
from edge.vision.sidecar import read_sidecar
from edge.people import cohort as co
from edge.door.decision import DecisionPolicy, Observation, PolicyConfig, passes
from edge.errors import GalleryError
from edge.people.gallery import Gallery


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cloud(rng, centre, spread, n):
    """``n`` unit vectors scattered around ``centre`` (smaller ``spread``: a more crowded neighbourhood)."""
    return _unit(centre[None] + spread * rng.normal(size=(n, len(centre))))


def test_a_crowded_neighbourhood_gets_a_stricter_threshold():
    rng = np.random.default_rng(0)
    d = 32
    a, b = _unit(rng.normal(size=d)), _unit(rng.normal(size=d))
    cohort = np.concatenate([_cloud(rng, a, 0.15, 400), _cloud(rng, b, 0.6, 400)])   # many look like a
    ta, tb = co.calibrate(a[None], cohort), co.calibrate(b[None], cohort)
    assert ta > tb
    # The threshold is the mean + z sd of the person's scores against the cohort, past almost all of them.
    sa = cohort @ a
    sb = (cohort @ b).astype(np.float64)
    assert tb == pytest.approx(min(sb.mean() + co.TAIL_Z * sb.std(), 1.0), abs=1e-5)
    assert (sa >= ta).mean() <= 0.01 and (sb >= tb).mean() <= 0.01
    # Calibrated for 1e-4: new strangers from the same population pass it about that rarely (here: never in 20k).
    fresh = np.concatenate([_cloud(rng, a, 0.15, 10000), _cloud(rng, b, 0.6, 10000)])
    assert (fresh @ a >= ta).mean() <= 5e-4
    # A person's score against a stranger is their best template: more templates, never a looser threshold.
    assert co.calibrate(np.stack([a, b]), cohort) >= ta
    with pytest.raises(co.CohortError, match="too small"):
        co.calibrate(a[None], cohort[:co.MIN_COHORT - 1])


def test_the_decision_uses_the_stricter_of_global_and_own_threshold():
    assert passes("ann", 0.96, 0.1, 0.95, 0.03, True, person_threshold=0.90)        # own looser: global decides
    assert not passes("ann", 0.94, 0.1, 0.95, 0.03, True, person_threshold=0.90)
    assert not passes("ann", 0.96, 0.1, 0.95, 0.03, True, person_threshold=0.97)    # own stricter: it decides
    assert passes("ann", 0.97, 0.1, 0.95, 0.03, True, person_threshold=0.97)
    policy = DecisionPolicy(PolicyConfig(threshold=0.95, min_margin=0.03, n=2, m=3))
    for t in (0.0, 0.1, 0.2):
        d = policy.observe(Observation(t, "ann", 0.96, 0.1, True, person_threshold=0.97))
        assert d.kind != "grant"


def test_cohort_file_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    e = _unit(rng.normal(size=(100, 16)))
    c = co.save(tmp_path / "c.npz", e, {"source": "test", "model_sha256": "m1"})
    back = co.load(tmp_path / "c.npz", "m1")
    assert back.sha256 == c.sha256 and back.meta["count"] == 100 and back.z == co.TAIL_Z
    assert back.meta["format_version"] == co.FORMAT_VERSION == 2 and back.meta == c.meta      # sealed as written
    assert back.meta["content_sha256"] == co.content_digest({k: v for k, v in back.meta.items()
                                                             if k != "content_sha256"})
    assert np.allclose(back.embeddings, e, atol=1e-3)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o600
    with pytest.raises(co.CohortError, match="another model"):
        co.load(tmp_path / "c.npz", "m2")
    # An edited cohort (one face moved) no longer matches its digest.
    with np.load(tmp_path / "c.npz") as z:
        emb, meta = z["embeddings"].copy(), z["meta"]
    emb[0] = emb[1]
    np.savez(tmp_path / "edited.npz", embeddings=emb, meta=meta)
    with pytest.raises(co.CohortError, match="digest"):
        co.load(tmp_path / "edited.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a cohort")
    with pytest.raises(co.CohortError, match="corrupt cohort"):
        co.load(tmp_path / "junk.npz")
    with pytest.raises(co.CohortError, match="at least"):
        co.save(tmp_path / "small.npz", e[:10], {})
    # The strict-threshold estimate reads the genuine quantiles (0.5 at the median).
    q = {"genuine_quantiles": list(np.linspace(0.8, 1.0, 101))}
    assert co.estimated_accept(0.9, q) == pytest.approx(0.5, abs=0.01)
    assert co.estimated_accept(0.9, {}) is None


def test_gallery_stores_thresholds_and_refuses_a_stale_calibration(tmp_path):
    rng = np.random.default_rng(2)
    cohort = co.save(tmp_path / "c.npz", _unit(rng.normal(size=(200, 16))), {"model_sha256": "m"})
    other = co.save(tmp_path / "o.npz", _unit(rng.normal(size=(200, 16))), {"model_sha256": "m"})
    crop = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ann = _unit(rng.normal(size=16))
    with Gallery(tmp_path / "g.sqlite").open(create=True) as g:
        g.add_templates("ann", [crop], ann[None], "m", ["t"], cohort=cohort)
        p = g.people()[0]
        assert p.threshold == pytest.approx(cohort.threshold(ann[None])) and p.cohort_sha256 == cohort.sha256
        idx = g.index("m", cohort.sha256)
        assert idx.match(ann).threshold == pytest.approx(p.threshold)
        with pytest.raises(GalleryError, match="not calibrated against the active cohort.*users reembed"):
            g.index("m", other.sha256)
        # A second template recomputes the person's threshold from both.
        bob = _unit(rng.normal(size=16))
        g.add_templates("ann", [crop], bob[None], "m", ["t"], cohort=cohort)
        assert g.people()[0].threshold == pytest.approx(cohort.threshold(np.stack([ann, bob])))
        assert g.recalibrate(other, "m") == 1
        assert g.index("m", other.sha256).match(ann).threshold == pytest.approx(
            other.threshold(np.stack([ann, bob])))
        before = g.people()[0].threshold

        def fail():
            raise OSError("disk full")
        with pytest.raises(OSError):                 # the cohort file could not be written: nothing changes
            g.recalibrate(cohort, "m", then=fail)
        assert g.people()[0].threshold == before
        g.recalibrate(None, "m")                     # no cohort: the global threshold alone
        assert g.people()[0].threshold is None and g.index("m").match(ann).threshold == float("-inf")


def test_a_version_1_gallery_is_upgraded_in_place(tmp_path):
    path = tmp_path / "g.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE persons (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL);
        CREATE TABLE templates (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES persons(id)
            ON DELETE CASCADE, crop BLOB NOT NULL, embedding BLOB NOT NULL, dim INTEGER NOT NULL,
            model_sha256 TEXT NOT NULL, source TEXT NOT NULL, created REAL NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1'), ('kind', 'doorface-gallery');
        INSERT INTO persons VALUES (1, 'ann', 0);""")
    db.commit()
    db.close()
    with Gallery(path) as g:
        assert g.people()[0].name == "ann" and g.people()[0].threshold is None
        assert g.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
        # Not calibrated against the shipped cohort yet: the door refuses until `users reembed`.
        with pytest.raises(GalleryError, match="users reembed"):
            g.index("m", "some-cohort")


def _faces_folder(folder, samples, capture, n):
    """``n`` door-camera captures of the sample photos (new pose, light, noise each): a small stand-in cohort."""
    from conftest import write_rgb

    folder.mkdir(parents=True)
    names = sorted(p.name for p in samples.glob("*.jpg") if "obama" not in p.name)
    for i in range(n):
        write_rgb(folder / f"{i:03d}.jpg", capture(names[i % len(names)], seed=i))
    return folder


def test_cohort_build_show_reset_recalibrate_everyone(tmp_path, samples, capture, shipped_model, detector_path,
                                                      capsys):
    from edge import cli

    args = door_config(tmp_path, shipped_model, detector_path)
    shipped = co.shipped_path(shipped_model)
    if not shipped.exists():
        pytest.skip(f"{shipped} missing: run `python -m convert.cohort --model {shipped_model}`")
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0
    out = capsys.readouterr().out
    assert "obama: door threshold" in out and "own " in out

    def own():
        with Gallery(tmp_path / "state" / "gallery.sqlite") as g:
            p = g.people()[0]
            return p.threshold, p.cohort_sha256

    first = own()
    assert first[1] == co.load(shipped).sha256
    folder = _faces_folder(tmp_path / "faces", samples, capture, co.MIN_COHORT + 4)
    (folder / "notes.txt").write_text("not an image")
    assert cli.main(["cohort", "build", "--images", str(folder), "--source", "test captures", *args]) == 0
    out = capsys.readouterr().out
    assert f"cohort: {co.MIN_COHORT + 4} faces" in out and "recalibrated 1 people" in out
    built = co.load(tmp_path / "state" / co.FILENAME)
    assert built.meta["source"] == "test captures" and built.meta["genuine_quantiles"]
    assert own()[1] == built.sha256 and own()[0] != first[0]
    assert cli.main(["cohort", "show", *args]) == 0
    assert "this door" in capsys.readouterr().out
    assert cli.main(["users", "list", *args]) == 0
    assert f"own {own()[0]:.3f}" in capsys.readouterr().out
    # The door reads the active cohort; identify reports the threshold it applied.
    assert cli.main(["identify", str(samples / "obama2.jpg"), *args]) == 0
    import json

    res = json.loads(capsys.readouterr().out)
    assert res["faces"][0]["best"] == "obama"
    assert res["faces"][0]["person_threshold"] == pytest.approx(max(res["threshold"], own()[0]), abs=1e-4)
    assert cli.main(["cohort", "reset", *args]) == 0
    assert "recalibrated 1 people" in capsys.readouterr().out
    assert own()[1] == first[1] and own()[0] == pytest.approx(first[0])
    assert not (tmp_path / "state" / co.FILENAME).exists()
    # Photos of an enrolled person in the cohort folder are pointed out (they would make that person's threshold
    # needlessly strict).
    from conftest import write_rgb

    write_rgb(folder / "obama-again.jpg", capture("obama.jpg", seed=99))
    assert cli.main(["cohort", "build", "--images", str(folder), *args]) == 0
    assert "warning: 1 cohort faces match enrolled people (obama)" in capsys.readouterr().out
    assert cli.main(["cohort", "reset", *args]) == 0
    capsys.readouterr()
    # Too few faces: refused, nothing changes.
    small = _faces_folder(tmp_path / "few", samples, capture, 3)
    assert cli.main(["cohort", "build", "--images", str(small), *args]) == 1
    assert "a cohort needs at least" in capsys.readouterr().err
    assert own()[1] == first[1]


def test_the_daemon_refuses_a_gallery_calibrated_against_another_cohort(tmp_path, samples, shipped_model,
                                                                        detector_path, capsys):
    from edge import cli

    args = door_config(tmp_path, shipped_model, detector_path)
    if not co.shipped_path(shipped_model).exists():
        pytest.skip("no shipped cohort for the test model")
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0
    # Someone drops another cohort into the state dir by hand (not through `cohort build`): nobody was
    # recalibrated against it, so the door does not start (locked) and says what to run.
    from edge.vision.embedder import Embedder

    sha = Embedder(str(shipped_model)).load().sha256
    rng = np.random.default_rng(3)
    co.save(tmp_path / "state" / co.FILENAME, _unit(rng.normal(size=(100, 128))), {"model_sha256": sha})
    capsys.readouterr()
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.jpg"), cv2.imread(str(samples / "obama2.jpg")))
    assert cli.main(["run", "--source", str(frames), "--relay", "mock", "--timeline", *args]) == 1
    captured = capsys.readouterr()
    assert "users reembed" in captured.err
    assert "UNLOCKED" not in captured.out
    assert cli.main(["users", "reembed", *args]) == 0
    assert cli.main(["check", *args]) in (0, 1)
    assert "cohort    OK per-person thresholds" in capsys.readouterr().out


def test_enrollment_warns_when_a_persons_threshold_is_strict():
    from edge.people.enroll import threshold_lines
    from edge.people.gallery import Person

    cohort = co.Cohort(np.zeros((1, 4), np.float32),
                       {"genuine_quantiles": list(np.linspace(0.90, 1.0, 101)), "embeddings_sha256": "x"})
    easy = threshold_lines(Person("ann", 1, 0.0, 0.93, "x"), 0.95, cohort)
    assert easy == ["ann: door threshold 0.950 (global; own 0.930, global 0.950)"]
    strict = threshold_lines(Person("bob", 1, 0.0, 0.97, "x"), 0.95, cohort)
    assert strict[0].startswith("bob: door threshold 0.970 (own, from the cohort")
    assert "about 30% of single photos" in strict[1] and "Enroll better photos" in strict[1]
    assert "take those out" not in strict[1]           # only said of a cohort this door built itself
    built = co.Cohort(cohort.embeddings, {**cohort.meta, "built_by": "doorface cohort build"})
    assert "take those out" in threshold_lines(Person("bob", 1, 0.0, 0.97, "x"), 0.95, built)[1]
    assert threshold_lines(Person("cy", 1, 0.0), 0.95, None) == [
        "cy: door threshold 0.950 (global; no per-person calibration)"]
    # A face whose closest cohort strangers sit at 0.96 must reach 0.975 with the margin: said, and warned about.
    crowded = threshold_lines(Person("dee", 1, 0.0, 0.93, "x"), 0.95, cohort, strangers=0.96, min_margin=0.015)
    assert crowded[0] == ("dee: door threshold 0.975 (the closest strangers plus the margin; own 0.930, global 0.950, "
                          "closest cohort strangers 0.960 + margin 0.015)")
    assert "about 25% of single photos" in crowded[1]


def test_strangers_level_is_the_median_crowding_of_a_persons_templates():
    from edge.people.enroll import strangers_level
    from edge.people.matcher import TemplateIndex

    rng = np.random.default_rng(8)
    cohort = co.Cohort(_unit(rng.normal(size=(60, 16))), {"embeddings_sha256": "x"})
    t = _unit(rng.normal(size=(4, 16)))
    index = TemplateIndex(t, ["ann", "ann", "ann", "bob"])
    want = float(np.median(co.crowding(t[:3], cohort.embeddings, 5)))
    assert strangers_level(index, "ann", cohort, 5) == pytest.approx(want, abs=1e-6)
    assert strangers_level(index, "ann", None, 5) is None and strangers_level(index, "ann", cohort, 0) is None


def test_calibration_off_is_said_and_drops_own_thresholds(tmp_path, samples, shipped_model, detector_path, capsys):
    from edge import cli

    args = door_config(tmp_path, shipped_model, detector_path, '[match]\ncalibration = "off"\n')
    assert cli.main(["config", "--validate", *args]) == 0
    assert "per-person thresholds OFF" in capsys.readouterr().out
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0
    assert "no per-person calibration" in capsys.readouterr().out
    with Gallery(tmp_path / "state" / "gallery.sqlite") as g:
        assert g.people()[0].threshold is None


def test_shipped_cohort_records_genuine_quantiles_of_same_person_pairs():
    from convert.cohort import genuine_quantiles

    e = _unit(np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.95, 0.1], [0, 0, 1]], np.float32))
    q = genuine_quantiles(e, np.array(["a", "a", "b", "b", "c"]), n=3)
    same = sorted([float(e[0] @ e[1]), float(e[2] @ e[3])])          # c has one photo: no pair
    assert q[0] == pytest.approx(same[0], abs=1e-5) and q[-1] == pytest.approx(same[1], abs=1e-5)


def test_the_shipped_cohorts_belong_to_their_models(each_model):
    from edge.vision.sidecar import read_sidecar

    path = co.shipped_path(each_model)
    if not path.exists():
        pytest.skip(f"{path} missing")
    c = co.load(path, read_sidecar(each_model)["sha256"])      # seal, digest and model sha256 verified
    assert c.meta["format_version"] == co.FORMAT_VERSION and c.meta["content_sha256"]
    assert (c.z, c.far, co.ESTIMATOR) == (co.TAIL_Z, co.TARGET_FAR, c.meta["estimator"]) == \
        (c.meta["z"], c.meta["far"], c.meta["estimator"])
    assert c.meta["genuine_quantiles"]
    if "FairFace" in c.meta["source"]:          # the default model's: the 539 FairFace faces, attributed
        assert c.meta["count"] == 539 and "CC BY 4.0" in c.meta["licence"]
    else:
        assert c.meta["count"] > 4000 and "Labeled Faces in the Wild" in c.meta["source"]


def test_crowding_is_the_mean_similarity_to_the_closest_strangers():
    rng = np.random.default_rng(5)
    cohort = _unit(rng.normal(size=(50, 8)))
    faces = _unit(rng.normal(size=(3, 8)))
    got = co.crowding(faces, cohort, 4)
    want = np.sort(faces @ cohort.T, axis=1)[:, -4:].mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert co.crowding(faces[0], cohort, 4) == pytest.approx(want[0], rel=1e-6)   # one face: a number
    assert co.crowding(faces[0], cohort, 500) == pytest.approx((cohort @ faces[0]).mean(), rel=1e-5)
    with pytest.raises(ValueError, match="k >= 1"):
        co.crowding(faces, cohort, 0)


def test_the_margin_is_also_taken_over_the_closest_strangers():
    """A face must beat its best enrolled person over the second person *and* the strangers it looks most like: a
    stranger who resembles the only enrolled person (no second person to compare with) but looks as much like
    several cohort strangers is not let in; a face that stands out from the strangers is."""
    from edge.people.matcher import TemplateIndex

    rng = np.random.default_rng(6)
    d = 64
    ann = _unit(rng.normal(size=d))
    lookalike = _unit(ann + 0.22 * _unit(rng.normal(size=d)))          # close to ann
    near = _unit(lookalike[None] + 0.2 * _unit(rng.normal(size=(6, d))))   # strangers close to the lookalike
    far = _unit(rng.normal(size=(200, d)))
    cohort = np.concatenate([near, far])
    alone = TemplateIndex(ann[None], ["ann"])
    crowded = TemplateIndex(ann[None], ["ann"], strangers=cohort, stranger_k=5)
    m0, m1 = alone.match(lookalike), crowded.match(lookalike)
    assert m0.identity == m1.identity == "ann" and m0.score == pytest.approx(m1.score)
    assert m0.margin == pytest.approx(m0.score + 1.0) and m0.crowd == float("-inf")   # one person: no margin
    assert m1.crowd == pytest.approx(co.crowding(lookalike, cohort, 5), abs=1e-6)
    assert m1.margin == pytest.approx(m1.score - m1.crowd, abs=1e-6)
    thr = m1.score - 0.01                                   # the lookalike reaches the threshold ...
    assert passes(m0.identity, m0.score, m0.margin, thr, 0.015, True)              # ... alone: let in
    assert m1.crowd > m1.score - 0.015                      # (the strangers are as close as ann)
    assert not passes(m1.identity, m1.score, m1.margin, thr, 0.015, True)          # ... with strangers: not
    genuine = _unit(ann + 0.05 * _unit(rng.normal(size=d)))                 # ann herself, far from the strangers
    g = crowded.match(genuine)
    assert passes(g.identity, g.score, g.margin, thr, 0.015, True)
    # Two people: the margin is over the closer of the second person and the strangers.
    two = TemplateIndex(np.stack([ann, far[0]]), ["ann", "bob"], strangers=cohort, stranger_k=5)
    m = two.match(lookalike)
    assert m.margin == pytest.approx(m.score - max(m.second_score, m.crowd), abs=1e-6)
    assert TemplateIndex(ann[None], ["ann"], strangers=cohort, stranger_k=0).match(lookalike).crowd == float("-inf")


def test_stranger_neighbours_come_from_the_sidecar_unless_configured(tmp_path):
    from edge import config
    from edge.errors import ConfigError
    from edge.vision.sidecar import stranger_neighbours

    meta = {"decision": {"far_target": "1e-5", "min_margin": 0.015, "stranger_neighbours": 5}}
    match = config.defaults()["match"]
    assert match["stranger_neighbours"] == "model"
    assert stranger_neighbours(meta, match) == 5
    assert stranger_neighbours({}, match) == 0                   # a model measured without it: second person only
    assert stranger_neighbours(meta, {**match, "stranger_neighbours": 3}) == 3
    assert stranger_neighbours(meta, {**match, "calibration": "off"}) == 0     # no cohort, nothing to compare with
    cfg = tmp_path / "c.toml"
    for text, needle in (("2.5", "whole number"), ("101", "out of range"), ("-1", "out of range"),
                         ('"many"', '"model" or a number')):
        cfg.write_text(f"[match]\nstranger_neighbours = {text}\n")
        with pytest.raises(ConfigError, match=needle):
            config.load(str(cfg))
    cfg.write_text("[match]\nstranger_neighbours = 3\n")
    assert config.load(str(cfg))["match"]["stranger_neighbours"] == 3
    cfg.write_text('[match]\nstranger_neighbours = 3\ncalibration = "off"\n')      # no cohort: said, not ignored
    with pytest.raises(ConfigError, match="needs match.calibration"):
        config.load(str(cfg))


def test_identify_reports_the_strangers_the_margin_was_taken_over(tmp_path, samples, port_model, detector_path,
                                                                 capsys):
    import json

    from edge import cli
    from edge.vision.sidecar import read_sidecar

    k = read_sidecar(port_model).get("decision", {}).get("stranger_neighbours", 0)
    if not k or not co.shipped_path(port_model).exists():
        pytest.skip("the shipped port's sidecar does not take the margin over cohort strangers, or no cohort")
    cfg = tmp_path / "c.toml"
    base = (f'[model]\nembedder = "{port_model}"\ndetector = "{detector_path}"\n'
            f'[relay]\nbackend = "mock"\n[state]\ndir = "{tmp_path / "state"}"\n')
    cfg.write_text(base)
    args = ["--config", str(cfg)]
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0
    capsys.readouterr()
    assert cli.main(["identify", str(samples / "obama2.jpg"), str(samples / "biden.jpg"), *args]) == 0
    obama, biden = (json.loads(line)["faces"][0] for line in capsys.readouterr().out.splitlines())
    assert obama["decision"] == "grant" and biden["decision"] == "deny"
    for f in (obama, biden):        # one enrolled person: the margin is to the strangers alone
        assert f["strangers"] < f["score"] + 1 and f["margin"] == pytest.approx(f["score"] - f["strangers"], abs=2e-4)
    assert cli.main(["check", *args]) in (0, 1)
    assert f"{k} closest strangers" in capsys.readouterr().out
    cfg.write_text(base + "[match]\nstranger_neighbours = 0\n")
    assert cli.main(["identify", str(samples / "obama2.jpg"), *args]) == 0
    assert json.loads(capsys.readouterr().out)["faces"][0]["strangers"] is None


def test_convert_decision_records_an_operating_point_without_touching_the_model(tmp_path, shipped_model, capsys):
    import shutil

    from convert.decision import main
    from edge.vision.assets import sha256_file
    from edge.vision.sidecar import read_sidecar, sidecar_path, stranger_neighbours

    model = tmp_path / shipped_model.name
    shutil.copy(shipped_model, model)
    shutil.copy(sidecar_path(shipped_model), sidecar_path(model))
    before = sha256_file(model)
    assert main([str(model), "--far-target", "1e-4", "--min-margin", "0.04", "--stranger-neighbours", "3",
                 "--note", "test"]) == 0
    meta = read_sidecar(model)          # sealed again: reads and verifies
    assert meta["decision"] == {"far_target": "1e-4", "min_margin": 0.04, "stranger_neighbours": 3,
                                "chosen_by": "test"}
    assert sha256_file(model) == before and meta["sha256"] == before
    assert stranger_neighbours(meta, {"stranger_neighbours": "model", "calibration": "cohort"}) == 3
    # An edited sidecar is not re-sealed by it.
    p = sidecar_path(model)
    p.write_text(p.read_text().replace('"min_margin": 0.04', '"min_margin": 0.0'))
    assert main([str(model), "--far-target", "1e-4", "--min-margin", "0.04", "--note", "x"]) == 1
    assert "edited" in capsys.readouterr().err


# --- what is checked is what is used: the cohort is sealed (issue 25, item 4) ----------------------------------------

def _rewrite(path, reseal=False, drop=(), **changes):
    """Rewrite a cohort file with ``changes`` to its meta (as someone editing it by hand would), optionally sealing
    the edit again (as someone who read the code would)."""
    import json

    with np.load(path) as z:
        e, meta = z["embeddings"].copy(), json.loads(str(z["meta"]))
    meta.update(changes)
    for k in drop:
        meta.pop(k, None)
    if reseal:
        meta = co.seal(meta)
    with open(path, "wb") as f:
        np.savez(f, embeddings=e, meta=np.array(json.dumps(meta, sort_keys=True)))


def _flips(data: bytes, path, positions):
    """Load ``data`` with one bit flipped at each position: ``{outcome: count}``; a flip may only be refused with a
    CohortError or be harmless (the same embeddings and meta load)."""
    import collections

    clean = co.load(path)
    out = collections.Counter()
    for pos in positions:
        b = bytearray(data)
        b[pos] ^= 1 << (pos % 8)
        path.write_bytes(bytes(b))
        try:
            c = co.load(path)
        except co.CohortError as exc:
            assert "\n" not in str(exc)
            out["refused"] += 1
            continue
        assert c.meta == clean.meta and np.array_equal(c.embeddings, clean.embeddings), f"flip at {pos} went unseen"
        out["harmless"] += 1
    path.write_bytes(data)
    return out


def test_every_flipped_bit_of_a_cohort_is_refused_in_one_line_or_harmless(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "c.npz"
    co.save(path, _unit(rng.normal(size=(co.MIN_COHORT, 8))), {"source": "test", "model_sha256": "m"})
    data = path.read_bytes()
    out = _flips(data, path, range(len(data)))            # every byte of the file
    print(f"cohort bit flips: {len(data)} positions, {dict(out)}")
    assert out["refused"] >= 0.9 * len(data)           # the rest: zip header fields nobody reads (dates, ...)


def test_flipped_bits_in_the_shipped_cohort_are_refused(tmp_path, shipped_model):
    import random

    path = tmp_path / "c.npz"
    path.write_bytes(co.shipped_path(shipped_model).read_bytes())
    data = path.read_bytes()
    head = range(0, 4096)                                  # zip and array headers, the first embeddings
    tail = range(len(data) - 40000, len(data))             # the meta (JSON, stored as UTF-32) and the zip directory
    positions = sorted(set(random.Random(4).sample(head, 150) + random.Random(5).sample(tail, 150)
                           + random.Random(6).sample(range(len(data)), 100)))
    out = _flips(data, path, positions)
    print(f"shipped cohort bit flips: {len(positions)} positions, {dict(out)}")
    assert out["refused"] >= 0.9 * len(positions)


def test_a_corrupt_cohort_is_one_line_and_no_config_ok(tmp_path, shipped_model, detector_path, capsys):
    from conftest import copy_with_sidecar
    from edge import cli

    model = copy_with_sidecar(shipped_model, tmp_path / "m")
    cohort = co.shipped_path(model)
    data = bytearray(co.shipped_path(shipped_model).read_bytes())
    data[len(data) // 2] ^= 0x10                           # one bit in the middle of the embeddings
    cohort.write_bytes(bytes(data))
    args = door_config(tmp_path, model, detector_path)
    assert cli.main(["config", "--validate", *args]) == 1
    out, err = capsys.readouterr()
    assert "config OK" not in out and err.count("\n") == 1
    assert err.startswith(f"doorface: corrupt cohort {cohort}: BadZipFile") and "unexpected error" not in err
    assert cli.main(["check", *args]) == 1
    assert f"cohort    FAIL corrupt cohort {cohort}" in capsys.readouterr().out


def test_an_edited_cohort_cannot_lower_a_persons_threshold(tmp_path, samples, shipped_model, detector_path, capsys):
    """The tester's edit: far 1e-4 -> 1e-3 in the cohort, then `users reembed`, lowered a person's own threshold.
    Now an edit is refused (the seal), a re-sealed edit too (k and far are the code's), and so is the unsealed format:
    the threshold never moves."""
    from conftest import copy_with_sidecar
    from edge import cli

    model = copy_with_sidecar(shipped_model, tmp_path / "m")
    cohort = co.shipped_path(model)
    cohort.write_bytes(co.shipped_path(shipped_model).read_bytes())
    original = cohort.read_bytes()
    args = door_config(tmp_path, model, detector_path)
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0

    def own():
        with Gallery(tmp_path / "state" / "gallery.sqlite") as g:
            return g.people()[0].threshold

    first = own()
    assert first is not None
    for edit, needle in (({"far": 1e-3}, "does not match its seal"),
                         ({"far": 1e-3, "reseal": True}, "records calibration estimator='normal-tail', z=3.38, "
                                                         "far=0.001"),
                         ({"k": 20, "reseal": True}, "k=20"),
                         ({"z": 2.0, "reseal": True}, "z=2.0"),
                         ({"format_version": 1, "drop": ("content_sha256",)}, "format version 1, which is not sealed"),
                         ({"genuine_quantiles": [0.0] * 101}, "does not match its seal")):
        cohort.write_bytes(original)
        _rewrite(cohort, **edit)
        capsys.readouterr()
        assert cli.main(["users", "reembed", *args]) == 1, edit
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, (edit, err)
        assert own() == first
    cohort.write_bytes(original)
    assert cli.main(["users", "reembed", *args]) == 0
    assert own() == pytest.approx(first)


def test_estimator_z_and_far_are_the_codes_not_the_files(tmp_path):
    rng = np.random.default_rng(12)
    c = co.make(_unit(rng.normal(size=(60, 8))), {"k": 3, "z": 1.0, "far": 0.5, "model_sha256": "m"})   # ignored
    assert (c.meta["z"], c.meta["far"], c.z, c.far) == (co.TAIL_Z, co.TARGET_FAR, co.TAIL_Z, co.TARGET_FAR)
    assert "k" not in c.meta and c.meta["estimator"] == co.ESTIMATOR
    odd = co.Cohort(c.embeddings, {**c.meta, "far": 0.5, "z": 1.0})    # an in-memory cohort cannot say otherwise
    assert odd.threshold(c.embeddings[:1]) == c.threshold(c.embeddings[:1])


def test_reseal_keeps_the_embeddings_and_refuses_an_edited_file(tmp_path):
    rng = np.random.default_rng(13)
    path = tmp_path / "c.npz"
    c = co.save(path, _unit(rng.normal(size=(60, 8))), {"model_sha256": "m"}, mode=0o644)
    with np.load(path) as z:
        before = z["embeddings"].tobytes()
    _rewrite(path, format_version=1, drop=("content_sha256",))      # a cohort written before the seal
    with pytest.raises(co.CohortError, match="not sealed"):
        co.load(path)
    from convert.cohort import main

    assert main(["--reseal", str(path)]) == 0
    back = co.load(path, "m")
    with np.load(path) as z:
        assert z["embeddings"].tobytes() == before
    assert back.sha256 == c.sha256 and back.meta == c.meta and path.stat().st_mode & 0o777 == 0o644
    _rewrite(path, format_version=1, drop=("content_sha256",), far=1e-3)
    with pytest.raises(co.CohortError, match="records calibration"):
        co.reseal(path)


def test_shipped_fairface_cohort_is_attributed_image_by_image():
    """The default model's cohort holds embeddings of FairFace images (CC BY 4.0): its attribution file names every
    image, its sha256, its link at a pinned commit and the licence, row by row; the cohort's meta pins the file."""
    import csv
    import hashlib

    from convert.cohort import ATTRIBUTION_FIELDS, FAIRFACE_COMMIT, attribution_path

    model = ROOT / "models" / "doorface-dlib-int8.tflite"
    c = co.load(co.shipped_path(model), read_sidecar(model)["sha256"])
    att = attribution_path(co.shipped_path(model))
    assert c.meta["attribution_file"] == att.name
    data = att.read_bytes()
    assert hashlib.sha256(data).hexdigest() == c.meta["attribution_sha256"]
    rows = list(csv.DictReader(data.decode().splitlines()))
    assert tuple(rows[0]) == ATTRIBUTION_FIELDS and len(rows) == c.meta["count"] == len(c.embeddings)
    assert [int(r["row"]) for r in rows] == list(range(len(rows)))
    assert len({r["file"] for r in rows}) == len(rows) == len({r["sha256"] for r in rows})
    for r in rows:
        assert r["licence"] == "CC BY 4.0" and r["licence_url"] == "https://creativecommons.org/licenses/by/4.0/"
        assert r["link"].endswith("/fairface/" + r["file"]) and FAIRFACE_COMMIT in r["link"]
        assert len(r["sha256"]) == 64 and r["file"].startswith("fairface_") and "FairFace" in r["dataset"]
    assert len(rows) + len(c.meta["skipped_files"]) == c.meta["images"] == 540
    # embeddings only: no face image ships
    assert not [p for p in (ROOT / "models").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                and p.name.startswith("fairface")]
    readme = (ROOT / "models" / "README.md").read_text() + (ROOT / "README.md").read_text()
    assert "FairFace" in readme and "CC BY 4.0" in readme and att.name in readme
