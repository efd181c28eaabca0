"""convert.thresholds: the model's thresholds for the comparison the door makes (jittered template vs face)."""
import json
import shutil

import numpy as np
import pytest

from convert.thresholds import template_scores, thresholds_at


def test_template_scores_take_every_ordered_pair_of_two_images():
    faces = np.eye(3, dtype=np.float32)
    templates = np.array([[0.8, 0.6, 0], [0.6, 0.8, 0], [0, 0, 1]], np.float32)
    gen, imp = template_scores(faces, templates, ["a", "a", "b"])
    # a0's face vs a1's template and a1's face vs a0's template; never an image against its own template
    assert sorted(gen.tolist()) == pytest.approx([0.6, 0.6])
    assert len(imp) == 4 and sorted(imp.tolist()) == pytest.approx([0, 0, 0, 0])
    at = thresholds_at(np.array([0.9, 0.95, 0.99]), np.linspace(0, 0.94, 1000))
    assert at[1e-2]["far"] <= 1e-2 and at[1e-2]["resolvable"] and not at[1e-5]["resolvable"]
    # 10 of the 1,000 strangers' scores may pass: the threshold sits just above the 11th highest (0.9306)
    assert at[1e-2]["threshold"] == pytest.approx(0.94 * 989 / 999) and at[1e-2]["tar"] == pytest.approx(2 / 3)


def test_records_template_thresholds_and_keeps_the_photo_pair_ones(tmp_path, samples, port_model, detector_path,
                                                                  capsys):
    from convert import thresholds
    from edge.vision.sidecar import read_sidecar, sidecar_path

    lfw = tmp_path / "lfw"
    for person, files in (("Barack_Obama", ("obama.jpg", "obama2.jpg", "obama3.jpg")), ("Joe_Biden", ("biden.jpg",))):
        (lfw / person).mkdir(parents=True)
        for i, f in enumerate(files, 1):
            shutil.copy(samples / f, lfw / person / f"{person}_{i:04d}.jpg")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\nBarack_Obama\t1\t2\nBarack_Obama\t1\tJoe_Biden\t1\n")
    model = tmp_path / port_model.name
    shutil.copy(port_model, model)
    shutil.copy(sidecar_path(port_model), sidecar_path(model))
    lm = port_model.parent / "doorface-landmarks5.npz"          # the landmark model its alignment names
    for f in (lm, lm.with_suffix(".json")):
        shutil.copy(f, tmp_path / f.name)
    before = read_sidecar(model)
    assert thresholds.main([str(model), "--detector", str(detector_path), "--lfw", str(lfw), "--pairs", str(pairs),
                            "--folds", "1"]) == 0
    after = read_sidecar(model)                       # the model is untouched and the sidecar sealed again
    assert after["sha256"] == before["sha256"]
    assert after["thresholds_photo_pairs"] == before.get("thresholds_photo_pairs", before["thresholds"])
    basis = after["thresholds_basis"]
    assert (basis["images"], basis["identities"], basis["genuine"], basis["impostor"]) == (4, 2, 6, 6)
    assert set(after["thresholds"]) == {"far_1e-2", "far_1e-3", "far_1e-4", "far_1e-5"}
    assert not basis["at_far"]["1e-2"]["resolvable"]  # 6 strangers' pairs cannot resolve 1 in 100
    assert basis["at_far"]["1e-5"]["tar"] == pytest.approx(1.0)   # obama's photos beat biden's against his
    assert after["decision"] == before["decision"]
    # an edited sidecar is refused, one line, non-zero
    meta = json.loads(sidecar_path(model).read_text())
    meta["thresholds"]["far_1e-5"] = 0.5
    sidecar_path(model).write_text(json.dumps(meta))
    capsys.readouterr()
    assert thresholds.main([str(model), "--lfw", str(lfw), "--pairs", str(pairs)]) == 1
    assert capsys.readouterr().err.startswith("convert.thresholds: ")
