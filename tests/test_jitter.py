"""Enrolled templates are the mean embedding of the stored crop and slightly moved copies of it (edge.vision.jitter)."""
import numpy as np

from conftest import door_config, rgb
from edge import cli
from edge.vision.embedder import FakeEmbedder
from edge.people.gallery import Gallery
from edge.vision.jitter import JITTERS, jittered, template_embedding


def _face():
    y, x = np.mgrid[0:96, 0:96]
    img = np.stack([(x * 2) % 256, (y * 3) % 256, ((x + y) * 5) % 256], axis=-1).astype(np.uint8)
    return img


def test_jittered_copies_are_fixed_small_moves_of_the_crop():
    crop = _face()
    a, b = jittered(crop), jittered(crop)
    assert len(a) == len(JITTERS) and all(c.shape == crop.shape and c.dtype == crop.dtype for c in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))          # the same copies every time (reembed)
    for c in a:
        assert not np.array_equal(c, crop)                          # each one moves the face
    # a move of nothing is the crop itself; the input is left alone
    same = jittered(crop, [(0.0, 1.0, 0.0, 0.0)])[0]
    assert np.array_equal(same, crop) and np.array_equal(crop, _face())


def test_template_is_the_unit_mean_of_the_copies_embeddings():
    emb = FakeEmbedder(input_size=96, dim=32)
    crop = _face()
    t = template_embedding(emb.embed_crop, crop)
    m = np.mean([emb.embed_crop(c) for c in [crop, *jittered(crop)]], axis=0)
    assert np.isclose(np.linalg.norm(t), 1.0, atol=1e-6)
    np.testing.assert_allclose(t, m / np.linalg.norm(m), atol=1e-6)


def test_enrollment_stores_jittered_templates_and_reembed_gives_them_again(tmp_path, samples, port_model,
                                                                          detector_path, capsys):
    from edge.build import build_analyzer
    from edge import config

    args = door_config(tmp_path, port_model, detector_path)
    cfg = args[1]
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0
    analyzer = build_analyzer(config.load(str(cfg)))
    emb = analyzer.embedder
    with Gallery(tmp_path / "state" / "gallery.sqlite") as g:
        [(_, _, crop)] = g.crops()
        stored = g.index(emb.sha256).embeddings[0]
    plain = emb.embed_crop(crop)
    np.testing.assert_allclose(stored, template_embedding(emb.embed_crop, crop), atol=1e-5)
    assert 0.98 < float(stored @ plain) < 0.99999          # near the photo's own embedding, not the same
    # the face at the door is embedded as it comes: the identify score of the enrolled photo is template . plain
    assert cli.main(["users", "reembed", *args]) == 0
    with Gallery(tmp_path / "state" / "gallery.sqlite") as g:
        np.testing.assert_allclose(g.index(emb.sha256).embeddings[0], stored, atol=1e-6)
    # the person's other photos still reach the door's strictest global threshold against the template (the gain
    # is statistical, measured on LFW by bench.operating; per photo it goes either way: 0.971 vs 0.973, 0.974 vs 0.974)
    others = [emb.embed_crop(emb.crop(img, analyzer.faces(img)[0]))
              for img in (rgb(samples / n) for n in ("obama2.jpg", "obama3.jpg"))]
    assert min(float(stored @ o) for o in others) > emb.meta["thresholds"]["far_1e-5"]
