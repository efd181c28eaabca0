"""Bad input (issue 25, item 5): image files that are huge, truncated, folders, missing or not files; names that
look like paths, hold escape sequences or invisible characters; camera passwords with raw ``/`` and ``@``; and the
TFLite runtime's INFO chatter on stderr. Each is refused (or hidden) with one line, and nothing else breaks."""
import json
import os
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, door_config
from edge import cli
from edge.errors import EnrollmentError, GalleryError
from edge.people.gallery import Gallery

# -- image files ---------------------------------------------------------------------------------------------------


def _segments_then_frame_header(jpeg: bytes, pad: int = 2, size: int = 40000) -> bytearray:
    """``jpeg`` with ``pad`` APP2 segments of ``size`` bytes inserted after SOI (as a large ICC profile or XMP block
    would be), so its frame header sits past the first 64 KiB; returns it with the offset of that header."""
    body = bytes(size)
    seg = b"\xff\xe2" + (size + 2).to_bytes(2, "big") + body
    d = bytearray(jpeg[:2] + seg * pad + jpeg[2:])
    i = 2
    while d[i + 1] not in (0xC0, 0xC1, 0xC2):           # walk the segments (an EXIF thumbnail holds another SOF)
        i += 2 + int.from_bytes(d[i + 2:i + 4], "big")
    return d, i


@pytest.fixture
def never_decoded(monkeypatch):
    """Fails the test if the image is decoded at all."""
    import edge.vision.images as images

    def refuse(*a, **k):
        raise AssertionError("decoded: the refusal came after decoding")
    monkeypatch.setattr(images.cv2, "imdecode", refuse)


def test_a_huge_jpeg_whose_header_sits_past_64k_is_refused_before_decoding(tmp_path, samples, never_decoded):
    """16000 x 16000 took 1.58 GB to decode before it was refused (the header was only looked for in 64 KiB)."""
    from edge.vision.images import image_size, read_rgb

    data, sof = _segments_then_frame_header((samples / "obama.jpg").read_bytes())
    assert sof > 65536
    assert image_size(bytes(data)) == (910, 1137)        # the real header, not the EXIF thumbnail's
    data[sof + 5:sof + 7] = (16000).to_bytes(2, "big")
    data[sof + 7:sof + 9] = (16000).to_bytes(2, "big")
    (tmp_path / "huge.jpg").write_bytes(bytes(data))
    with pytest.raises(EnrollmentError, match="16000x16000: more than 40 MP"):
        read_rgb(tmp_path / "huge.jpg")


def test_a_jpeg_with_big_segments_still_reads(tmp_path, samples):
    from edge.vision.images import read_rgb

    data, _ = _segments_then_frame_header((samples / "obama.jpg").read_bytes())
    (tmp_path / "icc.jpg").write_bytes(bytes(data))
    assert read_rgb(tmp_path / "icc.jpg").shape == (1137, 910, 3)


def _encoded(samples, ext, params=()):
    ok, buf = cv2.imencode(ext, cv2.imread(str(samples / "obama.jpg")), list(params))
    assert ok
    return buf.tobytes()


FORMATS = [(".jpg", ()), (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), (".jpg", (cv2.IMWRITE_JPEG_RST_INTERVAL, 4)),
           (".png", ()), (".bmp", ()), (".webp", ())]


@pytest.mark.parametrize("ext,params", FORMATS)
def test_truncated_images_are_refused_and_whole_ones_read(tmp_path, samples, ext, params, never_decoded):
    """OpenCV decodes a JPEG cut in half into a picture with a blank bottom half (and only a libjpeg warning);
    enrollment stored that crop. Cut anywhere, zero-padded or not, every format is refused before decoding."""
    from edge.vision.images import probe, read_rgb

    data = _encoded(samples, ext, params)
    whole = probe(data)
    assert whole.complete and (whole.width, whole.height) == (910, 1137)
    for cut in (0.5, 0.9, 0.99):
        part = data[:int(len(data) * cut)]
        for tail in (b"", b"\0" * 4096):
            p = tmp_path / f"cut{ext}"
            p.write_bytes(part + tail)
            with pytest.raises(EnrollmentError, match=r"is truncated .*copy the whole file again"):
                read_rgb(p)


def test_data_after_the_end_of_a_jpeg_is_fine(tmp_path, samples):
    """A motion photo or an MPO carries more after the first image's end-of-image marker: not a truncation."""
    from edge.vision.images import read_rgb

    p = tmp_path / "motion.jpg"
    p.write_bytes((samples / "obama.jpg").read_bytes() + b"ftypmp42" + bytes(5000))
    assert read_rgb(p).shape == (1137, 910, 3)


def test_folders_missing_files_devices_and_pipes_are_one_line_each(tmp_path):
    from edge.vision.images import read_rgb

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    cv2.imwrite(str(tmp_path / "x.tiff"), np.zeros((8, 8, 3), np.uint8))
    with open(tmp_path / "big.jpg", "wb") as f:          # sparse: never read, refused from its size
        f.truncate(161 * 2**20)
    cases = {tmp_path: "it is a folder", tmp_path / "missing.jpg": "no such file", fifo: "not a regular file",
             "/dev/zero": "not a regular file", tmp_path / "empty.jpg": "an empty file",
             tmp_path / "text.jpg": "not a JPEG, PNG, BMP or WebP image",
             tmp_path / "x.tiff": "not a JPEG, PNG, BMP or WebP image",
             tmp_path / "big.jpg": "161 MB: more than 160 MB",
             tmp_path / "\x1b[31mred.jpg": r"'.*\\x1b\[31mred.jpg': no such file"}
    for path, needle in cases.items():
        with pytest.raises(EnrollmentError, match=needle) as e:
            read_rgb(path)
        assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


@pytest.fixture
def door(tmp_path, samples, shipped_model, detector_path):
    """``--config`` of a door with obama enrolled from obama.jpg."""
    args = door_config(tmp_path, shipped_model, detector_path)
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), *args]) == 0
    return args


def _bad_paths(tmp_path, samples):
    cut = tmp_path / "half.jpg"
    data = (samples / "obama.jpg").read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    return [str(tmp_path), str(tmp_path / "missing.jpg"), str(cut), "/dev/zero"]


def test_identify_gives_a_line_per_bad_path_goes_on_and_fails_at_the_end(tmp_path, samples, door, capsys):
    """``identify DIR`` or a missing file stopped at `unexpected error: IsADirectoryError`, skipping the rest."""
    capsys.readouterr()
    bad = _bad_paths(tmp_path, samples)
    code = cli.main(["identify", *bad, str(samples / "obama.jpg"), *door])
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 1 and len(lines) == 5
    assert [x["image"] for x in lines[:4]] == bad and all("error" in x for x in lines[:4])
    assert "folder" in lines[0]["error"] and "no such file" in lines[1]["error"]
    assert "truncated" in lines[2]["error"] and "not a regular file" in lines[3]["error"]
    assert lines[4]["faces"][0]["identity"] == "obama"              # the good image after them still identified
    assert err == "doorface: 4 of 5 image(s) could not be read\n"


def test_embed_says_which_files_it_could_not_read_and_fails(tmp_path, samples, door, capsys):
    """``embed`` exited 0 on unreadable files (they came out as "no face")."""
    capsys.readouterr()
    bad = _bad_paths(tmp_path, samples)
    out = tmp_path / "e.npz"
    code = cli.main(["embed", str(samples / "obama.jpg"), *bad, "--out", str(out), *door])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 5 and err[-1] == "doorface: 4 of 5 image(s) could not be read"
    assert all(line.startswith("doorface: ") for line in err)
    z = np.load(out)
    assert list(z["detected"]) == [True, False, False, False, False]


def test_enroll_refuses_a_truncated_photo_and_stores_nothing(tmp_path, samples, shipped_model, detector_path,
                                                          capsys):
    args = door_config(tmp_path, shipped_model, detector_path)
    cut = tmp_path / "half.jpg"
    data = (samples / "obama2.jpg").read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    assert cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), str(cut), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "half.jpg is truncated" in err
    gallery = tmp_path / "state" / "gallery.sqlite"
    if gallery.exists():
        with Gallery(gallery) as g:
            assert g.people() == []


# -- names ---------------------------------------------------------------------------------------------------------

BAD_NAMES = ["../../x", "a/b", "a\\b", "line\nbreak", "x" * 5000, "", "   ", "\x1b[31mred", "ev\u202eil",
             "zero\u200bwidth", "bom\ufeff", ".hidden", "-", "-x", "tab\tx", "nb\u00a0sp", "ls\u2028x", "\udcff",
             "x" * 65]
GOOD_NAMES = {"obama": "obama", "  Mary Ann  ": "Mary Ann", "Zoë O'Brien-Smith": "Zoë O'Brien-Smith",
              "李小龍": "李小龍", "Jose\u0301": "Jos\u00e9", "x" * 64: "x" * 64,
              "R2-D2 (the droid)": "R2-D2 (the droid)"}


def test_one_name_rule():
    from edge.people.names import check_name, shown

    for name in BAD_NAMES:
        with pytest.raises(EnrollmentError, match="invalid name") as e:
            check_name(name)
        msg = str(e.value)
        assert msg.isprintable() and len(msg) < 400, msg     # the refusal itself prints safely
    for name, stored in GOOD_NAMES.items():
        assert check_name(name) == stored
        assert shown(stored) == stored
    assert shown(None) == "-" and shown("") == "''" and shown("a\nb") == "'a\\nb'"
    assert shown("\x1b[31mred") == "'\\x1b[31mred'" and shown("ev\u202eil") == "'ev\\u202eil'"
    assert len(shown("x" * 5000)) <= 80


def _gallery_with(path, *names):
    rng = np.random.default_rng(0)
    g = Gallery(path).open(create=True)
    for i, name in enumerate(names):
        e = rng.normal(size=(1, 8)).astype(np.float32)
        g.add_templates(name, [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)], e / np.linalg.norm(e), "s",
                        [f"t{i}"])
    return g


def test_the_gallery_keeps_the_rule(tmp_path):
    g = _gallery_with(tmp_path / "g.sqlite", "ann")
    for name in BAD_NAMES:
        with pytest.raises(EnrollmentError, match="invalid name"):
            g.add_templates(name, [np.zeros((96, 96, 3), np.uint8)], np.ones((1, 8), np.float32), "s", ["x"])
        with pytest.raises(EnrollmentError, match="invalid name"):
            g.rename("ann", name)
    assert [p.name for p in g.people()] == ["ann"]
    assert g.rename(" ann ", "  Ann Lee ") == "Ann Lee"          # found by its clean spelling, stored clean
    assert g.rename("Ann Lee", "Ann Lee") == "Ann Lee"
    with pytest.raises(GalleryError, match="no person named '../x'"):
        g.remove("../x")
    g.close()


def test_rename_and_enroll_refuse_bad_names_on_the_command_line(tmp_path, capsys):
    """`users rename` accepted ../../x, newlines, 5,000 characters and an empty name (a grant was then logged
    ``identity=-``); `enroll` accepted escape sequences and zero-width / right-to-left characters."""
    state = tmp_path / "state"
    _gallery_with(state / "gallery.sqlite", "obama").close()
    common = ["--config", "/dev/null", "--state-dir", str(state)]
    for name in BAD_NAMES:
        assert cli.main(["users", "rename", *common, "--", "obama", name]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "invalid name" in err and "\x1b" not in err and "\u202e" not in err
        assert cli.main(["enroll", "--images", "/nonexistent.jpg", *common, "--", name]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "invalid name" in err, err   # refused before anything else is looked at
    with Gallery(state / "gallery.sqlite") as g:
        assert [p.name for p in g.people()] == ["obama"]


def test_names_stored_before_the_rule_print_safely(tmp_path, capsys):
    """A gallery from before the rule may hold any name: tables and messages escape it, one line per person, and
    it can still be renamed or removed by the name it has."""
    state = tmp_path / "state"
    _gallery_with(state / "gallery.sqlite", "ann", "bob", "cid").close()
    db = sqlite3.connect(state / "gallery.sqlite")
    for old, new in (("ann", "\x1b[2J\x1b[31mann"), ("bob", "bob\nERROR forged line"), ("cid", "")):
        db.execute("UPDATE persons SET name=? WHERE name=?", (new, old))
    db.commit()
    db.close()
    common = ["--state-dir", str(state), "--config", "/dev/null"]
    assert cli.main(["users", "list", *common]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 4 and out.splitlines()[-1].startswith("liveness:")
    assert "'bob\\nERROR forged line'" in out
    assert cli.main(["users", "rename", "", "cid", *common]) == 0
    assert capsys.readouterr().out == "renamed '' -> cid\n"
    assert cli.main(["users", "remove", "bob\nERROR forged line", *common]) == 0
    assert capsys.readouterr().out == "removed 'bob\\nERROR forged line'\n"


# -- camera passwords ----------------------------------------------------------------------------------------------

SECRET_URIS = [
    ("rtsp://admin:S3cret@10.0.0.5:554/stream", "rtsp://***@10.0.0.5:554/stream"),
    ("rtsp://admin:Pa/ss@word@SecretTail@127.0.0.1:9/stream", "rtsp://***@127.0.0.1:9/stream"),
    ("rtsp://admin:Se/cr/et@cam/live", "rtsp://***@cam/live"),
    ("rtsp://admin:@SecretTail@cam/live", "rtsp://***@cam/live"),
    ("rtsps://admin:Sec ret@cam/live", "rtsps://***@cam/live"),
    ("gst:rtspsrc location=rtsp://admin:S3/c@ret@cam/x latency=0 ! decodebin ! appsink",
     "gst:rtspsrc location=rtsp://***@cam/x latency=0 ! decodebin ! appsink"),
    ("gst:rtspsrc location=rtsp://cam/x user-id=admin user-pw=S3cret ! decodebin",
     "gst:rtspsrc location=rtsp://cam/x user-id=admin user-pw=*** ! decodebin"),
    ("http://cam/snapshot.cgi?user=admin&pwd=S3cret&res=1", "http://cam/snapshot.cgi?user=admin&pwd=***&res=1"),
    ("rtsp://cam:554/stream", "rtsp://cam:554/stream"),
    ("v4l2:/dev/video0", "v4l2:/dev/video0"),
]


def test_camera_passwords_with_slashes_and_ats_are_redacted():
    """``rtsp://admin:Pa/ss@word@SecretTail@...`` was logged ``rtsp://***@word@SecretTail@...``, and a raw ``/``
    left the whole password in the clear."""
    from edge.door.camera import open_source, redact_uri

    for uri, want in SECRET_URIS:
        assert redact_uri(uri) == want
        assert redact_uri(f"camera source {uri!r} stopped") == f"camera source {want!r} stopped"
    assert "Tail" not in open_source("rtsp://admin:Pa/ss@word@SecretTail@127.0.0.1:9/x").name


def test_doorface_check_never_shows_the_camera_password(tmp_path, shipped_model, detector_path, capsys):
    args = door_config(tmp_path, shipped_model, detector_path,
                       '[camera]\nsource = "rtsp://admin:Pa/ss@word@SecretTail@127.0.0.1:9/stream"\n')
    assert cli.main(["check", *args]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("camera"))
    assert "rtsp://***@127.0.0.1:9/stream" in line and "Secret" not in out and "word" not in out


def test_the_ready_line_never_shows_the_camera_password(tmp_path, door, caplog):
    from edge import config
    from edge.build import daemon as Daemon
    from edge.door.camera import FakeSource
    from edge.door.relay import make_relay

    cfg = config.load(door[1], {})
    src = FakeSource([np.zeros((48, 64, 3), np.uint8)] * 3, name="rtsp://admin:Pa/ss@word@SecretTail@cam/x")
    with caplog.at_level("INFO"):
        Daemon(cfg, source=src, relay=make_relay("mock", "17", True), install_signals=False).run()
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready:")]
    assert ready and ready[0].endswith("camera rtsp://***@cam/x") and "Secret" not in caplog.text


# -- the runtime's chatter -----------------------------------------------------------------------------------------


def test_creating_an_interpreter_prints_nothing(shipped_model, detector_path):
    """Every command printed ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` on stderr (once per
    process: hence a fresh one), so one error was two lines."""
    code = ("import sys; from edge.vision.runtime import load_interpreter\n"
            f"for m in ({str(shipped_model)!r}, {str(detector_path)!r}):\n"
            "    print(load_interpreter(m)[0])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count("\n") == 2
    assert r.stderr == "", r.stderr


def test_one_error_is_one_line(tmp_path, door):
    """The whole command in a fresh process: an unreadable image gives its JSON line and one line on stderr."""
    r = subprocess.run([sys.executable, "-m", "edge", "identify", str(tmp_path / "missing.jpg"), *door], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.splitlines() == ["doorface: 1 of 1 image(s) could not be read"], r.stderr
    assert "XNNPACK" not in r.stderr


def test_what_else_is_said_while_an_interpreter_is_created_still_comes_out(capfd):
    from edge.vision.runtime import runtime_chatter_dropped

    with runtime_chatter_dropped():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: a real problem\n")
    assert capfd.readouterr().err == "ERROR: a real problem\n"
