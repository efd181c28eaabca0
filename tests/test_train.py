"""Training pieces: losses and mining on hand-made embeddings, the sampler, the metrics, a tiny run whose loss falls."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import ROOT  # noqa: E402
from train import losses  # noqa: E402
from train.metrics import best_threshold, kfold_accuracy, roc, tar_at_far  # noqa: E402
from train.sampler import PKSampler  # noqa: E402


def unit(*vs):
    a = np.array(vs, np.float32)
    return tf.constant(a / np.linalg.norm(a, axis=1, keepdims=True))


def test_batch_hard_picks_hardest_positive_and_negative():
    # Anchor 0 (class A): positives 1 (close) and 2 (far); negatives 3 (close) and 4 (far).
    e = unit([1, 0], [np.cos(0.1), np.sin(0.1)], [np.cos(1.0), np.sin(1.0)], [np.cos(1.2), -np.sin(1.2)], [-1, 0])
    y = tf.constant([0, 0, 0, 1, 1])
    d = 1 - e.numpy() @ e.numpy().T
    hp, hn = d[0, 2], d[0, 3]       # hardest positive, hardest negative of anchor 0
    got = losses.batch_hard_triplet(e[:5], y, margin=0.5).numpy()
    # Recompute the whole mean by hand.
    per = []
    for a in range(5):
        pos = [d[a, j] for j in range(5) if j != a and y[j] == y[a]]
        neg = [d[a, j] for j in range(5) if y[j] != y[a]]
        per.append(max(0.0, max(pos) - min(neg) + 0.5))
    assert got == pytest.approx(np.mean(per), abs=1e-5)
    assert per[0] == pytest.approx(max(0, hp - hn + 0.5), abs=1e-6)


def test_separated_classes_have_zero_triplet_loss():
    e = unit([1, 0.01], [1, -0.01], [-1, 0.01], [-1, -0.01])
    y = tf.constant([0, 0, 1, 1])
    for fn in (losses.batch_hard_triplet, losses.semi_hard_triplet):
        assert fn(e, y, margin=0.2).numpy() == pytest.approx(0.0, abs=1e-6)


def test_semi_hard_prefers_the_semi_hard_negative():
    # d(a,p) = 1 - cos(0.5); negatives at angles 0.3 (hard: closer than p), 0.7 (semi-hard), 2.0 (easy).
    e = unit([1, 0], [np.cos(0.5), np.sin(0.5)], [np.cos(0.3), -np.sin(0.3)],
             [np.cos(0.7), -np.sin(0.7)], [np.cos(2.0), -np.sin(2.0)])
    y = tf.constant([0, 0, 1, 2, 3])
    d = 1 - e.numpy() @ e.numpy().T
    loss = losses.semi_hard_triplet(e, y, margin=0.5).numpy()
    # Pairs (0,1) and (1,0); for (0,1) the semi-hard negative is 3.
    l01 = max(0, d[0, 1] - d[0, 3] + 0.5)
    negs1 = [d[1, j] for j in (2, 3, 4)]
    semi1 = [x for x in negs1 if d[1, 0] < x < d[1, 0] + 0.5]
    l10 = max(0, d[1, 0] - (min(semi1) if semi1 else min(negs1)) + 0.5)
    assert loss == pytest.approx((l01 + l10) / 2, abs=1e-5)


def test_contrastive_and_distillation():
    e = unit([1, 0], [1, 0], [0, 1])
    y = tf.constant([0, 0, 1])
    # Matched pair at distance 0; mismatched pairs at distance 1 >= margin 0.5: zero loss.
    assert losses.contrastive(e, y, margin=0.5).numpy() == pytest.approx(0.0, abs=1e-6)
    assert losses.contrastive(e, tf.constant([0, 1, 1]), margin=0.5).numpy() > 0
    t = tf.constant([[2.0, 0], [2.0, 0], [0, 3.0]])  # unnormalised teacher, same directions
    assert losses.distillation(e, t).numpy() == pytest.approx(0.0, abs=1e-6)
    assert losses.relational(e, t).numpy() == pytest.approx(0.0, abs=1e-6)
    assert losses.distillation(e, -t).numpy() == pytest.approx(2.0, abs=1e-6)


def test_sampler_is_identity_balanced():
    labels = np.r_[np.repeat(np.arange(10), 3), np.arange(10, 30)]   # 10 ids x3, 20 singletons
    s = PKSampler(labels, p=4, k=2, singletons=3, seed=0)
    seen = set()
    for _ in range(5):
        b = s.batch()
        assert len(b) == s.batch_size == 11
        ids = labels[b[:8]]
        assert [len(set(ids[i:i + 2])) for i in range(0, 8, 2)] == [1, 1, 1, 1]
        assert len(set(ids)) == 4
        assert set(labels[b[8:]]) <= set(range(10, 30))
        seen |= set(ids)
    assert seen == set(range(10))       # an epoch walks every identity
    with pytest.raises(ValueError):
        PKSampler(labels, p=11, k=2)


def test_metrics_on_synthetic_scores():
    rng = np.random.default_rng(0)
    gen, imp = rng.normal(0.8, 0.05, 1000), rng.normal(0.2, 0.05, 100000)
    tar, thr, achieved = tar_at_far(gen, imp, 1e-3)
    assert achieved <= 1e-3 and (imp >= thr).sum() == int(1e-3 * len(imp))
    assert tar == pytest.approx((gen >= thr).mean())
    # Perfectly separable: accuracy 1, AUC 1, EER 0.
    s = np.r_[gen, imp[:1000]]
    y = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    assert kfold_accuracy(s, y, np.arange(2000) % 10)["accuracy"] == 1.0
    far_, tar_, _, auc, eer = roc(s, y)
    assert auc == pytest.approx(1.0) and eer == pytest.approx(0.0)
    # Known answer: scores 1..4, labels F T F T -> best threshold accepts {4} or {2,3,4}: accuracy 0.75.
    assert best_threshold([1, 2, 3, 4], [False, True, False, True])[1] == 0.75
    # Random scores: AUC about 0.5.
    assert roc(rng.random(4000), rng.random(4000) < 0.5)[3] == pytest.approx(0.5, abs=0.05)


def test_fit_report_splits_training_and_held_out_identities():
    from train.data import Pair
    from train.fit import fit_report

    # Four people, two images each: a, b trained on (fold 1), c, d held out (fold 0).
    keys = [f"{p}/{p}_{i}.jpg" for p in "abcd" for i in (1, 2)]
    train_mask = np.array([k[0] in "ab" for k in keys])
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(8, 16))
    # The student copies the teacher on training images (cosine 1) and is orthogonal-ish noise on held-out ones,
    # except that it still matches each held-out person's second image to their first.
    student = teacher.copy()
    student[4:] = rng.normal(size=(4, 16))
    student[5], student[7] = student[4], student[6]
    pairs = [Pair(keys[0], keys[1], True, 1), Pair(keys[0], keys[2], False, 1),
             Pair(keys[4], keys[5], True, 0), Pair(keys[4], keys[6], False, 0)]
    rep = fit_report(student, teacher, train_mask, keys, pairs, {0})
    assert rep["train"]["images"] == 4 and rep["held_out"]["images"] == 4
    assert rep["train"]["teacher_cosine"] == pytest.approx(1.0)
    held_cos = np.mean([student[i] @ teacher[i] / np.linalg.norm(student[i]) / np.linalg.norm(teacher[i])
                        for i in range(4, 8)])
    assert rep["held_out"]["teacher_cosine"] == pytest.approx(held_cos)
    assert rep["train"]["student"]["pairs"] == 2 and rep["held_out"]["student"]["pairs"] == 2
    # Held-out genuine pair has cosine 1 in the student: the single fold's own threshold separates it.
    assert rep["held_out"]["student"]["accuracy"] == 1.0


def test_augmentation_keeps_shape_and_range():
    from train.augment import AugmentConfig, augment

    cfg = AugmentConfig(**{k: 1.0 for k in ("flip", "affine", "photometric", "low_light", "blur", "jpeg",
                                            "grayscale", "occlusion", "low_res", "side_light")})
    img = tf.constant(np.random.default_rng(0).integers(0, 255, (96, 96, 3)).astype(np.float32))
    out = augment(img, cfg).numpy()
    assert out.shape == (96, 96, 3) and out.min() >= 0 and out.max() <= 255
    assert np.allclose(out[..., 0], out[..., 1])  # grayscale/IR applied


def test_low_res_and_side_light_do_what_they_say():
    from train.augment import _low_res, _side_light

    img = tf.constant(np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.float32))
    low = _low_res(img).numpy()
    assert low.shape == (64, 64, 3)
    # Detail is gone: neighbouring pixels differ far less than in the noise image.
    assert np.abs(np.diff(low, axis=1)).mean() < 0.5 * np.abs(np.diff(img.numpy(), axis=1)).mean()
    flat = tf.fill((32, 40, 3), 100.0)
    lit = _side_light(flat).numpy()
    cols = lit[0, :, 0]
    assert lit.shape == (32, 40, 3) and abs(cols[0] - cols[-1]) > 40   # one side dark, the other bright
    assert np.all(np.diff(cols) >= 0) or np.all(np.diff(cols) <= 0)


def test_port_architecture_config_checks():
    from train import config

    cfg = config.load(ROOT / "train" / "configs" / "port-door.toml")
    assert cfg["model"]["arch"] == "dlib_port" and config.TEMPLATE["dlib_port"] == "dlib150"
    with pytest.raises(ValueError, match="dlib_port takes model.input_size = 150"):
        config.load(None, {"model.arch": "dlib_port", "model.input_size": 96})
    with pytest.raises(ValueError, match="model.arch must be one of"):
        config.load(None, {"model.arch": "resnet50"})


def test_model_is_small_and_normalised():
    import train.model as tm

    m = tm.build_embedder()
    assert m.count_params() < 1_000_000
    # training=True: with untrained BN statistics an inference pass can shrink activations below the
    # l2-normalisation epsilon (seen on CI); batch statistics keep them at a normal scale.
    x = np.random.default_rng(0).integers(0, 255, (4, 112, 112, 3)).astype(np.float32)
    e = m(x, training=True).numpy()
    assert e.shape == (4, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert not any(type(l).__name__ == "PReLU" for l in m.layers)


def tiny_embedder(dim: int, head_ch: int):
    """The real architecture, tiny: 64x64 input, one stage."""
    import train.model as tm

    return tm.build_embedder(dim, width=0.25, stages=((32, 2, 1, 2),), head_ch=head_ch, input_size=64)


def test_tiny_training_run_loss_falls(tmp_path):
    """A few steps on synthetic identities (colour/pattern per identity): the loss falls."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n_id, per = 8, 4
    base = rng.integers(0, 255, (n_id, 1, 16, 16, 3))
    imgs = np.repeat(base, per, axis=1).reshape(-1, 16, 16, 3)
    imgs = np.kron(imgs, np.ones((1, 4, 4, 1))).astype(np.float32)      # 64x64
    imgs = np.clip(imgs + rng.normal(0, 10, imgs.shape), 0, 255)
    labels = np.repeat(np.arange(n_id), per)
    model = tiny_embedder(32, 64)
    opt = tf.keras.optimizers.Adam(3e-3)
    x, y = tf.constant(imgs), tf.constant(labels)

    def step():
        with tf.GradientTape() as tape:
            # margin 1.0 (cosine distance): unreachable by an untrained net, so the first losses are > 0
            loss = losses.batch_hard_triplet(model(x, training=True), y, 1.0)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return float(loss)
    first = [step() for _ in range(3)]
    for _ in range(25):
        last = step()
    assert np.mean(first) > 0.1
    assert last < 0.5 * np.mean(first)


def test_flip_averaged_model_is_mirror_invariant_and_unit_length():
    import train.model as tm

    base = tiny_embedder(16, 32)
    model = tm.flip_averaged(base)
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3)).astype(np.float32)
    a, b = model(x).numpy(), model(x[:, :, ::-1]).numpy()
    assert a.shape == (3, 16)
    np.testing.assert_allclose(a, b, atol=1e-5)                 # a face and its mirror image: one embedding
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert model.count_params() == base.count_params()          # same weights, used twice


def test_init_copies_a_previous_run_and_refuses_another_architecture(tmp_path):
    """optim.init (fine-tuning a previous run): same architecture -> identical outputs; different -> clear error."""
    from train.train import init_weights

    tf.keras.utils.set_random_seed(1)
    previous = tiny_embedder(16, 32)
    previous.save(tmp_path / "previous.keras")
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3)).astype(np.float32)
    fresh = tiny_embedder(16, 32)
    assert not np.allclose(fresh(x).numpy(), previous(x).numpy(), atol=1e-3)
    init_weights(fresh, tmp_path / "previous.keras")
    np.testing.assert_allclose(fresh(x).numpy(), previous(x).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="architecture differs"):
        init_weights(tiny_embedder(8, 32), tmp_path / "previous.keras")


def test_config_validates_and_every_shipped_config_loads():
    from train import config

    for path in sorted((ROOT / "train" / "configs").glob("*.toml")):
        cfg = config.load(path)
        text = path.read_text()
        assert all(f"\n{k} =" in text for sec in cfg.values() for k in sec), f"{path.name} must list every key"
    with pytest.raises(ValueError, match="unknown key optim.init_from"):
        config.load(None, {"optim.init_from": "x"})


def test_real_lfw_pairs_resolve_and_the_holdout_is_disjoint(lfw):
    """On the shared LFW subset: every image the dev pairs name is in the archive, and holding out folds 1-2
    leaves training identities that never appear in those folds' pairs (the honest-evaluation split)."""
    from train.data import list_items, pair_identities, read_pairs

    pairs = read_pairs(lfw / "pairs-dev.txt")
    keys = {i.key for i in list_items(lfw / "lfw-deepfunneled-train.tgz")}
    assert pairs and all(p.key_a in keys and p.key_b in keys for p in pairs)
    assert {p.fold for p in pairs} >= {0, 1}
    held = pair_identities(pairs, {0, 1})
    train_people = {k.split("/")[0] for k in keys} - held
    # The shipped model's recorded split is this one (its metrics are on exactly these unseen people).
    shipped = json.loads((ROOT / "models" / "train-data.json").read_text())
    assert shipped["held_out_folds"] == [1, 2] and shipped["held_out_identities"] == len(held)
    assert shipped["train_identities"] == len(train_people)
    assert sum(p.same for p in pairs if p.fold in (0, 1)) == sum(not p.same for p in pairs if p.fold in (0, 1))


def test_morphs_ride_at_the_end_of_each_batch_with_their_teacher_rows():
    """make_dataset puts batch.morphs bank items after the p x k real images, label -1 (the metric loss is given
    only the first sampler.batch_size items), each with its own teacher embedding."""
    from train.train import make_dataset

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 3)
    data = {"images": rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8), "labels": labels,
            "teacher": np.eye(12, 8, dtype=np.float32), "train_mask": np.ones(12, bool),
            "morph_images": np.zeros((5, 16, 16, 3), np.uint8),
            "morph_teacher": np.tile(np.arange(5, dtype=np.float32)[:, None] + 100, (1, 8))}
    cfg = {"batch": {"p": 2, "k": 2, "singletons": 0, "morphs": 3},
           "augment": {k: 0.0 for k in ("flip", "affine", "photometric", "low_light", "blur", "jpeg", "grayscale",
                                        "occlusion")}}
    ds, sampler = make_dataset(data, cfg, seed=0)
    x, y, t = next(iter(ds))
    assert sampler.batch_size == 4 and x.shape == (7, 16, 16, 3)
    y, t = y.numpy(), t.numpy()
    assert (y[:4] >= 0).all() and (y[4:] == -1).all()
    assert (t[4:, 0] >= 100).all() and (t[:4] <= 1).all()
    assert (x.numpy()[4:] == 0).all()


def test_an_empty_or_missing_dataset_path_is_a_one_line_error(tmp_path, capsys):
    from train.data import list_items
    from train.preprocess import main

    with pytest.raises(FileNotFoundError, match="no dataset given"):
        list_items("")              # not the working directory read as a folder-per-identity tree
    assert main(["", "--out", str(tmp_path / "c.npz")]) == 2
    assert main([str(tmp_path / "missing.tgz"), "--out", str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["train.preprocess: no dataset given", f"train.preprocess: no such dataset: {tmp_path}/missing.tgz"]
    assert not (tmp_path / "c.npz").exists()
