import os
import sqlite3
import stat

import numpy as np
import pytest

from edge.errors import GalleryError
from edge.people.gallery import Gallery


def crops(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(n)]


def embs(n, dim=8, seed=0):
    e = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_create_add_list_match_and_mode(tmp_path):
    g = Gallery(tmp_path / "g.sqlite").open(create=True)
    e = embs(3)
    g.add_templates("ann", crops(2), e[:2], "sha-a", ["a1", "a2"])
    g.add_templates("bob", crops(1), e[2:], "sha-a", ["b1"])
    assert [(p.name, p.templates) for p in g.people()] == [("ann", 2), ("bob", 1)]
    m = g.index("sha-a").match(e[2])
    assert m.identity == "bob" and m.score == pytest.approx(1.0, abs=1e-5) and m.second == "ann"
    assert stat.S_IMODE(os.stat(tmp_path / "g.sqlite").st_mode) == 0o600
    stored = g.crops()
    assert np.array_equal(stored[0][2], crops(2)[0])  # PNG is lossless
    g.close()


def test_failed_add_stores_nothing(tmp_path):
    g = Gallery(tmp_path / "g.sqlite").open(create=True)
    bad = crops(1) + [np.zeros((0, 0, 3), np.uint8)]   # second crop cannot be encoded
    with pytest.raises(Exception):
        g.add_templates("ann", bad, embs(2), "sha", ["x", "y"])
    assert g.people() == []


def test_remove_rename(tmp_path):
    g = Gallery(tmp_path / "g.sqlite").open(create=True)
    g.add_templates("ann", crops(1), embs(1), "s", ["x"])
    g.rename("ann", "anne")
    with pytest.raises(GalleryError):
        g.rename("nobody", "x")
    g.add_templates("bob", crops(1), embs(1, seed=1), "s", ["y"])
    with pytest.raises(GalleryError, match="exists"):
        g.rename("anne", "bob")
    g.remove("anne")
    with pytest.raises(GalleryError):
        g.remove("anne")
    assert [p.name for p in g.people()] == ["bob"]
    assert len(g.index("s")) == 1


def test_foreign_model_is_refused_until_reembedded(tmp_path):
    g = Gallery(tmp_path / "g.sqlite").open(create=True)
    g.add_templates("ann", crops(2), embs(2), "old-model", ["x", "y"])
    with pytest.raises(GalleryError, match="reembed"):
        g.index("new-model")
    n = g.reembed(lambda c: np.ones(4, np.float32) / 2, "new-model")
    assert n == 2 and len(g.index("new-model")) == 2


@pytest.mark.parametrize("content", [b"this is not sqlite at all" * 100, b""])
def test_corrupt_or_foreign_file(tmp_path, content):
    p = tmp_path / "g.sqlite"
    p.write_bytes(content)
    with pytest.raises(GalleryError):
        Gallery(p).open()


def test_other_sqlite_database_is_not_a_gallery(tmp_path):
    p = tmp_path / "g.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE songs (x)")
    db.commit()
    db.close()
    with pytest.raises(GalleryError, match="not a doorface gallery"):
        Gallery(p).open()


def test_missing_gallery_without_create(tmp_path):
    with pytest.raises(GalleryError, match="no gallery"):
        Gallery(tmp_path / "none.sqlite").open()


def test_concurrent_enrolments_cannot_store_one_face_under_two_names(tmp_path):
    """The tester's race (1 in 6 tries): the duplicate check and the insert are one BEGIN IMMEDIATE transaction."""
    import threading

    path = tmp_path / "state" / "g.sqlite"        # a fresh state dir: no FileExistsError either
    face = embs(1, seed=3)
    results = {}
    barrier = threading.Barrier(2)

    def enrol(name):
        g = Gallery(path)
        try:
            barrier.wait()
            g.open(create=True)

            def check():
                m = g.index("sha").match(face[0])
                if m.identity is not None and m.identity != name and m.score > 0.9:
                    raise GalleryError(f"already matches {m.identity}")
            results[name] = g.add_templates(name, crops(1), face, "sha", ["x"], check=check)
        except GalleryError as exc:
            results[name] = str(exc)
        finally:
            g.close()
    for _ in range(5):
        results.clear()
        if path.exists():
            path.unlink()
        ts = [threading.Thread(target=enrol, args=(n,)) for n in ("ann", "bob")]
        [t.start() for t in ts]
        [t.join(30) for t in ts]
        stored = [n for n, r in results.items() if r == 1]
        assert len(stored) == 1, results
        other = ({"ann", "bob"} - set(stored)).pop()
        assert results[other] == f"already matches {stored[0]}"
        with Gallery(path) as g:
            assert [p.name for p in g.people()] == stored
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_a_full_disk_is_a_clear_error_and_changes_nothing(tmp_path):
    g = Gallery(tmp_path / "g.sqlite").open(create=True)
    g.add_templates("ann", crops(1), embs(1), "sha", ["a"])
    pages = g.db.execute("PRAGMA page_count").fetchone()[0]
    g.db.execute(f"PRAGMA max_page_count = {pages}")    # SQLite's own "database or disk is full"
    with pytest.raises(GalleryError, match="full; nothing was changed"):
        g.add_templates("bob", crops(4, seed=1), embs(4, seed=1), "sha", list("abcd"))
    assert [p.name for p in g.people()] == ["ann"]
    g.db.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert g.add_templates("bob", crops(1, seed=1), embs(1, seed=1), "sha", ["b"]) == 1   # still usable


def test_an_empty_gallery_file_is_never_silently_replaced(tmp_path):
    path = tmp_path / "g.sqlite"
    path.write_bytes(b"")
    with pytest.raises(GalleryError, match="is empty .0 bytes., not a doorface gallery"):
        Gallery(path).open(create=True)
    assert path.stat().st_size == 0


def test_access_log_survives_a_full_disk(tmp_path, caplog):
    from edge.door.accesslog import AccessLog

    log = AccessLog(tmp_path / "a.sqlite").open()
    log.record("deny", None, 0.1)
    pages = log._db.execute("PRAGMA page_count").fetchone()[0]
    log._db.execute(f"PRAGMA max_page_count = {pages}")
    with caplog.at_level("ERROR"):
        for i in range(200):                       # fills the last page, then every insert fails
            ev = log.record("grant", "ann", 0.99, frame=i)
    assert ev["decision"] == "grant" and log.failures > 0 and "the door keeps working" in caplog.text
    log.close()


def test_a_gallery_this_user_cannot_open_says_so(tmp_path, monkeypatch):
    """Not "corrupt": a permission problem, with who owns the file (root bypasses modes, so os.access is faked)."""
    g = Gallery(tmp_path / "g.sqlite").open(create=True)
    g.close()
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(GalleryError, match="permission denied .it belongs to .*; run as that user"):
        Gallery(tmp_path / "g.sqlite").open()


def test_a_first_enroll_on_a_full_disk_leaves_no_gallery(tmp_path, monkeypatch):
    """A full disk while the new gallery's schema is written: a one-line error and no file left (before: a 0-byte
    gallery.sqlite that every later enroll and run refused, even after space was freed)."""
    import sqlite3

    from edge.people import gallery as gal

    real = sqlite3.connect

    def full_disk(*a, **k):
        db = real(*a, **k)
        db.execute("PRAGMA max_page_count = 1")
        return db

    monkeypatch.setattr(gal.sqlite3, "connect", full_disk)
    path = tmp_path / "state" / "gallery.sqlite"
    with pytest.raises(GalleryError, match="cannot create gallery .*full.*nothing was left behind"):
        Gallery(path).open(create=True)
    assert not path.exists()
    monkeypatch.setattr(gal.sqlite3, "connect", real)
    Gallery(path).open(create=True).close()           # space freed: the next enroll just works


def test_a_failed_first_enrollment_removes_the_gallery_it_created(tmp_path):
    path = tmp_path / "gallery.sqlite"
    with pytest.raises(RuntimeError):
        with Gallery(path).open(create=True):
            raise RuntimeError("no face in the photo")
    assert not path.exists()
    with Gallery(path).open(create=True) as g:         # an existing gallery is never removed
        g.add_templates("ann", [np.zeros((8, 8, 3), np.uint8)], [np.ones(4, np.float32) / 2], "m", ["t"])
    with pytest.raises(RuntimeError):
        with Gallery(path).open(create=True):
            raise RuntimeError("refused")
    assert path.exists()
