"""Enrollment: from image files/folders (all or nothing) or from the camera (guided, quality-gated, de-duplicated)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import cv2
import numpy as np

from edge.errors import EnrollmentError
from edge.people.gallery import Gallery
from edge.people.names import check_name, shown
from edge.vision.jitter import template_embedding
from edge.vision.analyzer import FaceAnalyzer
from edge.vision.images import expand_paths, read_rgb

NEAR_DUPLICATE = 0.97   # cosine above which a camera frame adds nothing new


def closest_other(name: str, embeddings: np.ndarray, index) -> tuple:
    """``(person, similarity)``: the enrolled person other than ``name`` closest to any of ``embeddings`` (their
    best template), or ``(None, -inf)`` when nobody else is enrolled."""
    other, best = None, float("-inf")
    for emb in embeddings:
        m = index.match(emb)
        who, score = (m.second, m.second_score) if m.identity == name else (m.identity, m.score)
        if who is not None and score > best:
            other, best = who, float(score)
    return other, best


def household_line(name: str, other, similarity: float, threshold: float, min_margin: float) -> str:
    """What enrollment reports: the closest other person and how far below the door's threshold they lie."""
    if other is None:
        return f"{shown(name)}: nobody else enrolled yet"
    return (f"{shown(name)}: closest other person {shown(other, quote=True)}, similarity {similarity:.3f}, "
            f"{threshold - similarity:+.3f} below the threshold {threshold:.3f} (the door needs {min_margin:g})")


def check_not_someone_else(name: str, embeddings: np.ndarray, gallery: Gallery, model_sha: str,
                           threshold: float, min_margin: float = 0.0) -> None:
    """Refuse a face that already matches another person, or lies so close to another person's gallery that the
    door's margin rule could not tell the two apart (a household of look-alikes: ``threshold - similarity`` below
    ``min_margin``). Runs inside the enrollment's write transaction."""
    other, score = closest_other(name, embeddings, gallery.index(model_sha))
    if other is None:
        return
    if score >= threshold:
        raise EnrollmentError(f"this face already matches {shown(other, quote=True)} (score {score:.3f} >= "
                              f"{threshold:.3f}); use --force to enroll anyway")
    if threshold - score < min_margin:
        raise EnrollmentError(f"this face is too close to {shown(other, quote=True)} (similarity {score:.3f}, only "
                              f"{threshold - score:.3f} below the threshold {threshold:.3f}; the door needs a margin "
                              f"of {min_margin:g}): the door could take one for the other. Use more or better photos, "
                              "or --force to enroll anyway")


STRICT_ACCEPT = 0.5   # warn when fewer than this share of a person's single photos would reach their threshold


def strangers_level(index, name: str, cohort, k: int) -> Optional[float]:
    """How close the strangers a person's photos look most like are: the median over their templates of the mean
    similarity to their ``k`` closest cohort faces (:func:`edge.people.cohort.crowding`). A photo of them at the door
    must beat about this by the margin. None without a cohort or ``k``."""
    from edge.people.cohort import crowding

    if cohort is None or not k or not len(index):
        return None
    rows = index.embeddings[np.asarray([index.people[i] == name for i in index.row_person])]
    return float(np.median(crowding(rows, cohort.embeddings, k))) if len(rows) else None


def threshold_lines(person, threshold: float, cohort, strangers: Optional[float] = None,
                    min_margin: float = 0.0) -> List[str]:
    """What enrollment (and `cohort build`, `users reembed`) reports about a person's own threshold, and a warning
    when it is so strict that they will struggle to get in (estimated from the model's genuine-score quantiles
    that the shipped cohort records). ``strangers`` (:func:`strangers_level`): a photo must also beat them by
    ``min_margin``, which counts like a threshold."""
    from edge.people.cohort import estimated_accept

    own, name = person.threshold, shown(person.name)
    if own is None:
        return [f"{name}: door threshold {threshold:.3f} (global; no per-person calibration)"]
    near = strangers + min_margin if strangers is not None else float("-inf")
    used = max(own, threshold, near)
    which = "global" if used == threshold else "own, from the cohort" if used == own else \
        "the closest strangers plus the margin"
    lines = [f"{name}: door threshold {used:.3f} ({which}; own {own:.3f}, global {threshold:.3f}"
             + (f", closest cohort strangers {strangers:.3f} + margin {min_margin:g}" if strangers is not None
                else "") + ")"]
    accept = estimated_accept(used, cohort.meta) if cohort is not None else None
    if accept is not None and accept < STRICT_ACCEPT:
        lines.append(f"warning: {name}'s threshold is strict: about {100 * accept:.0f}% of single photos of a "
                     "person reach it, so they may have to stand in front of the door longer. Enroll better "
                     "photos (good light, looking at the camera, taken as the door camera will see them, on "
                     "different days); more near-identical photos do not help: the threshold guards all of them"
                     + ("; if this door's cohort holds photos of them, take those out and build it again"
                        if cohort.meta.get("built_by") == "doorface cohort build" else ""))
    return lines


def enroll_images(name: str, paths, analyzer: FaceAnalyzer, gallery: Gallery, threshold: float,
                  force: bool = False, progress: Optional[Callable] = None, min_margin: float = 0.0,
                  say: Callable[[str], None] = print, cohort=None) -> int:
    """Enroll ``name`` from image files or folders. Every image must hold exactly one usable face; any refusal
    stores nothing. Returns the number of templates added."""
    name = check_name(name)
    files = expand_paths(paths)
    crops, embs = [], []
    for f in (progress(files) if progress else files):
        rgb = read_rgb(f)
        faces = analyzer.faces(rgb)
        if not faces:
            raise EnrollmentError(f"no face found in {f}")
        if len(faces) > 1:
            raise EnrollmentError(f"{len(faces)} faces in {f}: use a photo of {shown(name)} alone")
        res = analyzer.describe(rgb, faces[0])
        if res.rejected:
            raise EnrollmentError(f"face in {f} is not usable: {res.rejected}")
        crops.append(res.crop)
        embs.append(template_embedding(analyzer.embedder.embed_crop, res.crop))
    embs = np.stack(embs)
    sha = analyzer.embedder.sha256
    say(household_line(name, *closest_other(name, embs, gallery.index(sha)), threshold, min_margin))
    check = None if force else (lambda: check_not_someone_else(name, embs, gallery, sha, threshold, min_margin))
    return gallery.add_templates(name, crops, embs, sha, [str(f) for f in files], check=check, cohort=cohort)


GUIDANCE = ("look straight at the camera", "turn your head slightly left", "turn your head slightly right",
            "tilt your chin slightly up", "look straight at the camera again")


def enroll_camera(name: str, source: FrameSource, analyzer: FaceAnalyzer, gallery: Gallery, threshold: float,
                  count: int = 5, force: bool = False, say: Callable[[str], None] = print,
                  max_frames: int = 600, min_margin: float = 0.0, cohort=None, live_scores: Optional[list] = None) -> int:
    """Guided enrollment from a camera: keeps frames with one face that passes the quality gates and is not a
    near-duplicate of a kept one, until ``count`` templates. Nothing is stored unless all ``count`` are found.
    ``live_scores``, when given, receives the liveness score of every usable frame (this door's live faces, for
    :mod:`edge.vision.livecal`)."""
    name = check_name(name)
    crops, embs = [], []
    step = -1
    seen = 0
    with source:
        while len(crops) < count and seen < max_frames:
            want = min(len(crops) * len(GUIDANCE) // count, len(GUIDANCE) - 1)
            if want != step:
                step = want
                say(f"[{len(crops)}/{count}] {GUIDANCE[step]}")
            frame = source.read()
            if frame is None:
                break
            seen += 1
            faces = analyzer.faces(frame.image, frame.detect_image)
            if len(faces) != 1:
                continue
            res = analyzer.describe(frame.image, faces[0])
            if res.rejected:
                continue
            if live_scores is not None and res.liveness is not None:
                live_scores.append(res.liveness)
            if embs and max(float(e @ res.embedding) for e in embs) > NEAR_DUPLICATE:
                continue
            crops.append(res.crop)
            embs.append(res.embedding)
    if len(crops) < count:
        raise EnrollmentError(f"only {len(crops)} of {count} usable, distinct face images in {seen} frames; "
                              "nothing stored (better light, one person in view, move slightly between shots)")
    embs = np.stack([template_embedding(analyzer.embedder.embed_crop, c) for c in crops])
    sha = analyzer.embedder.sha256
    say(household_line(name, *closest_other(name, embs, gallery.index(sha)), threshold, min_margin))
    check = None if force else (lambda: check_not_someone_else(name, embs, gallery, sha, threshold, min_margin))
    n = gallery.add_templates(name, crops, embs, sha, [f"camera:{source.name}"] * len(crops), check=check,
                              cohort=cohort)
    say(f"[{count}/{count}] done")
    return n

