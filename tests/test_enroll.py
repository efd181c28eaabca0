import cv2
import numpy as np
import pytest

from conftest import door_config, rgb
from edge import cli
from edge.people.gallery import Gallery


def run(args, config_for_args):
    return cli.main([*args, *config_for_args])


@pytest.fixture
def args(tmp_path, shipped_model, detector_path):
    return door_config(tmp_path, shipped_model, detector_path)


def people(tmp_path):
    with Gallery(tmp_path / "state" / "gallery.sqlite") as g:
        return {p.name: p.templates for p in g.people()}


def test_enroll_list_rename_remove(tmp_path, samples, args, capsys):
    assert run(["enroll", "obama", "--images", str(samples / "obama.jpg"), str(samples / "obama2.jpg")], args) == 0
    assert people(tmp_path) == {"obama": 2}
    assert run(["users", "rename", "obama", "barack"], args) == 0
    assert run(["users", "list"], args) == 0
    assert "barack\t2 template(s)" in capsys.readouterr().out
    assert run(["users", "remove", "barack"], args) == 0
    assert people(tmp_path) == {}


def test_refuses_a_face_that_is_someone_else(tmp_path, samples, capture, args, capsys):
    from conftest import write_rgb

    assert run(["enroll", "obama", "--images", str(samples / "obama.jpg")], args) == 0
    capsys.readouterr()
    again = write_rgb(tmp_path / "again.jpg", capture("obama.jpg"))   # the same man, another capture
    assert run(["enroll", "impostor", "--images", again], args) == 1
    assert "already matches 'obama'" in capsys.readouterr().err
    assert people(tmp_path) == {"obama": 1}
    assert run(["enroll", "impostor", "--images", again, "--force"], args) == 0
    assert "impostor: closest other person 'obama', similarity" in capsys.readouterr().out


def test_refuses_no_face_several_faces_and_unreadable(tmp_path, samples, args, capsys, detector_path):
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 120, np.uint8))
    two = tmp_path / "two.jpg"
    from edge.door.democlip import face_patch
    from edge.vision.detector import BlazeFaceDetector

    det = BlazeFaceDetector(detector_path)
    a, b = (cv2.resize(face_patch(rgb(samples / n), det), (400, 400)) for n in ("obama.jpg", "biden.jpg"))
    cv2.imwrite(str(two), cv2.cvtColor(np.hstack([a, b]), cv2.COLOR_RGB2BGR))
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    good = str(samples / "obama.jpg")
    for bad, needle in ((blank, "no face"), (two, "2 faces"), (junk, "cannot read"),
                        (tmp_path / "missing.jpg", "no such file")):
        assert run(["enroll", "x", "--images", good, str(bad)], args) == 1
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1
    # Nothing stored by any refusal (the good image came first each time).
    assert not (tmp_path / "state" / "gallery.sqlite").exists() or people(tmp_path) == {}


def test_enroll_from_a_folder_and_reembed(tmp_path, samples, args, capsys):
    folder = tmp_path / "obama"
    folder.mkdir()
    for n in ("obama.jpg", "obama2.jpg"):
        (folder / n).write_bytes((samples / n).read_bytes())
    assert run(["enroll", "obama", "--images", str(folder)], args) == 0
    assert run(["users", "reembed"], args) == 0
    assert "re-embedded 2 template(s)" in capsys.readouterr().out


def test_camera_enrollment_keeps_distinct_good_frames(tmp_path, samples, shipped_model, detector_path):
    from edge.door.camera import FakeSource
    from edge.build import build_analyzer
    from edge.people.enroll import enroll_camera
    from edge import config

    cfg = config.load(str(_empty(tmp_path)), {"model.embedder": str(shipped_model),
                                               "model.detector": str(detector_path)})
    analyzer = build_analyzer(cfg)
    photos = [rgb(samples / n) for n in ("obama.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg")]
    frames = [np.full((480, 640, 3), 90, np.uint8)] + photos  # no face, then a duplicate, then two new
    said = []
    with Gallery(tmp_path / "g.sqlite").open(create=True) as g:
        n = enroll_camera("obama", FakeSource(frames), analyzer, g, 0.5, count=3, say=said.append)
        assert n == 3 and said[0].startswith("[0/3]") and said[-1] == "[3/3] done"
        from edge.errors import EnrollmentError

        with pytest.raises(EnrollmentError, match="nothing stored"):
            enroll_camera("other", FakeSource(frames[:3]), analyzer, g, 0.99, count=3, say=said.append)
        assert [p.name for p in g.people()] == ["obama"]


def _empty(tmp_path):
    p = tmp_path / "empty.toml"
    p.write_text("")
    return p


def test_huge_images_are_refused_before_decoding(tmp_path, samples):
    import cv2

    from edge.vision.images import image_size, read_rgb
    from edge.errors import EnrollmentError

    img = cv2.imread(str(samples / "obama.jpg"))
    for ext in (".jpg", ".png"):
        p = tmp_path / f"x{ext}"
        cv2.imwrite(str(p), img)
        assert image_size(p.read_bytes()) == (img.shape[1], img.shape[0])
        with pytest.raises(EnrollmentError, match="MP; use a smaller photo"):
            read_rgb(p, max_pixels=1000)
        assert read_rgb(p).shape == img.shape
    # A JPEG header claiming 16000 x 16000 is refused from its header (never decoded).
    data = bytearray((tmp_path / "x.jpg").read_bytes())
    i = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[i + 5:i + 7] = (16000).to_bytes(2, "big")
    data[i + 7:i + 9] = (16000).to_bytes(2, "big")
    (tmp_path / "huge.jpg").write_bytes(bytes(data))
    with pytest.raises(EnrollmentError, match="16000x16000"):
        read_rgb(tmp_path / "huge.jpg")


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_household_check_refuses_a_look_alike_within_the_margin(tmp_path):
    """Two people whose galleries lie closer than the door's margin allows are refused (unless --force); the
    enrollment reports the closest other person and the margin either way."""
    from edge.people.enroll import check_not_someone_else, closest_other, household_line
    from edge.errors import EnrollmentError
    from edge.people.gallery import Gallery

    rng = np.random.default_rng(0)
    ann = _unit(rng.normal(size=32))
    noise = _unit(rng.normal(size=32))
    noise = _unit(noise - (noise @ ann) * ann)              # orthogonal to ann

    def at(cos):                                             # a unit vector at this cosine from ann
        return _unit(cos * ann + np.sqrt(1 - cos ** 2) * noise)[None]

    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with Gallery(tmp_path / "g.sqlite").open(create=True) as g:
        g.add_templates("ann", [crop], ann[None], "m", ["test"])
        thr, margin = 0.95, 0.03
        with pytest.raises(EnrollmentError, match="already matches 'ann'"):
            check_not_someone_else("bob", at(0.96), g, "m", thr, margin)
        with pytest.raises(EnrollmentError, match="too close to 'ann'.*--force"):
            check_not_someone_else("bob", at(0.93), g, "m", thr, margin)
        check_not_someone_else("bob", at(0.90), g, "m", thr, margin)     # 0.05 below the threshold: fine
        check_not_someone_else("ann", at(0.93), g, "m", thr, margin)     # more photos of ann herself: fine
        other, sim = closest_other("bob", at(0.90), g.index("m"))
        assert other == "ann" and sim == pytest.approx(0.90, abs=1e-5)
        line = household_line("bob", other, sim, thr, margin)
        assert "closest other person 'ann'" in line and "+0.050 below the threshold 0.950" in line
        assert closest_other("ann", at(0.9), g.index("m")) == (None, float("-inf"))
