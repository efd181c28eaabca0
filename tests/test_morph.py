"""Morph bank (train/morph.py): the blend and its warp on known answers, parent choice, the bank and its leak guard."""
import cv2
import numpy as np
import pytest

from train.morph import build_bank, load_bank, morph_pair, plan

LM = np.array([[40, 50], [80, 50], [60, 75], [60, 95]], np.float32)   # eyes, nose, mouth centre


def test_morph_pair_blends_and_warps_b_onto_a():
    a = np.full((120, 120, 3), 200, np.uint8)
    b = np.zeros((120, 120, 3), np.uint8)
    b[50, 40] = 255                          # a dot on B's left eye
    assert (morph_pair(a, b, LM, LM, 1.0) == a).all()
    assert (morph_pair(a, b, LM, LM, 0.0) == b).all()
    np.testing.assert_array_equal(morph_pair(a, np.zeros_like(a), LM, LM, 0.25), np.full_like(a, 50))
    # B's face 10 px right and 5 px down: after the warp its eye dot sits on A's eye.
    b_shift = np.zeros_like(b)
    b_shift[55, 50] = 255
    out = morph_pair(np.zeros_like(a), b_shift, LM, LM + [10, 5], 0.0)
    assert np.unravel_index(out[..., 0].argmax(), out.shape[:2]) == (50, 40)


def test_plan_pairs_two_different_training_people():
    persons = np.array(["a", "a", "b", "c", "held", "held"])
    mask = persons != "held"
    ia, ib, lam = plan(persons, mask, 500, seed=0, lam_range=(0.3, 0.7))
    assert (persons[ia] != persons[ib]).all()
    assert mask[ia].all() and mask[ib].all()
    assert lam.min() >= 0.3 and lam.max() <= 0.7
    with pytest.raises(ValueError, match="two training identities"):
        plan(persons, persons == "a", 5, seed=0)


class MeanColourTeacher:
    """A stand-in teacher: the mean colour inside the box (a morph's is between its parents')."""

    def embed(self, rgb, box, landmarks=None):
        x0, y0, x1, y1 = [int(v) for v in box]
        return rgb[y0:y1, x0:x1].reshape(-1, 3).mean(0).astype(np.float32)


@pytest.mark.parametrize("workers", [1, 2])
def test_bank_of_a_folder_tree_and_its_held_out_guard(tmp_path, workers):
    colours = {"ann": (250, 0, 0), "bob": (0, 250, 0), "cat": (0, 0, 250)}
    keys, persons = [], []
    for name, c in colours.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        img = np.zeros((120, 120, 3), np.uint8)
        img[:] = c
        cv2.imwrite(str(tmp_path / "data" / name / f"{name}_0001.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        keys.append(f"{name}/{name}_0001.png")
        persons.append(name)
    cache = {"keys": np.array(keys), "persons": np.array(persons), "landmarks": np.stack([LM] * 3),
             "boxes": np.tile(np.array([[30, 30, 90, 110]], np.float32), (3, 1))}
    mask = np.array([True, True, False])      # cat is held out
    out = tmp_path / "bank.npz"
    bank = build_bank(tmp_path / "data", cache, mask, 6, seed=1, out=out, teacher=MeanColourTeacher(),
                      workers=workers, progress=False)
    assert bank["crops"].shape == (6, 112, 112, 3) and bank["teacher"].shape == (6, 3)
    for a, b, lam, t in zip(bank["parent_a"], bank["parent_b"], bank["lam"], bank["teacher"]):
        ca, cb = np.array(colours[a.split("/")[0]]), np.array(colours[b.split("/")[0]])
        np.testing.assert_allclose(t, lam * ca + (1 - lam) * cb, atol=1.0)
        assert "cat" not in (a + b)
    loaded = load_bank(out, held_identities={"cat"})
    np.testing.assert_array_equal(loaded["crops"], bank["crops"])
    with pytest.raises(ValueError, match="held-out identities"):
        load_bank(out, held_identities={"ann"})


def test_config_morph_keys_are_checked():
    from train import config

    with pytest.raises(ValueError, match="needs a morph bank"):
        config.load(None, {"batch.morphs": "8"})
    with pytest.raises(ValueError, match="needs a teacher"):
        config.load(None, {"data.morphs": "100", "loss.teacher": "none"})


def test_cli_refuses_a_missing_dataset_or_no_morphs(tmp_path, capsys):
    from train.morph import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\ndataset = "no/such.tgz"\nmorphs = 10\n')
    assert main(["--config", str(cfg)]) == 2
    assert "dataset not found" in capsys.readouterr().err
    cfg.write_text(f'[data]\ndataset = "{tmp_path}"\n')
    assert main(["--config", str(cfg)]) == 2
    assert "asks for no morphs" in capsys.readouterr().err
