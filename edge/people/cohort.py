"""The stranger cohort and per-person thresholds: a stranger's chance of opening the door should not depend on whom
the door knows.

One global threshold promises a false-accept rate that holds on average over the faces it was fitted on; faces in a
crowded neighbourhood of face space (measured: Asian faces, then Indian and Black faces, with the models here) are
matched by strangers far more often. So each enrolled person also gets a threshold of their own, set at enrollment
from the faces of a *cohort* of strangers (embeddings only, no images): the person's score against every cohort face
(the best of their templates, as the matcher scores them) is computed, and the person's threshold is the mean of
those scores plus ``z`` of their standard deviations (a normal tail: ``threshold = mean + z * sd``). ``z`` is one
number for everyone (:data:`TAIL_Z`), chosen on LFW folds that no reported figure is measured on so that strangers
pass the own thresholds at about :data:`TARGET_FAR` per comparison, pooled (``python -m bench.calibration``). Why a
normal tail and not the empirical one: the shipped cohort is 539 faces, too few to see a 1e-4 tail; the mean and
the spread use every score, and a person whose look-alikes are many (their scores sit high and spread wide) gets a
stricter threshold in proportion (models/README.md has the measurement against the peaks-over-threshold fit used
before). The door then uses the stricter of that and the global threshold (:func:`edge.door.decision.passes`):
calibration can only make a person harder to match, never easier.

A cohort is one ``.npz`` file: ``embeddings`` (N x D, float16, unit length) and ``meta`` (JSON: provenance, the model
sha256 it was made with, the calibration parameters, a digest of the embeddings), sealed like a model's sidecar: the
meta's own digest (``content_sha256``, which covers the embeddings' digest) is checked on every load, so a flipped
bit or an edited field is refused with one line, never used. The calibration parameters (``estimator``, ``z``,
``far``) are the code's (:data:`ESTIMATOR`, :data:`TAIL_Z`, :data:`TARGET_FAR`), never read from the file: a cohort
recording others (a cohort from before the normal tail records ``k``) is refused. A
default cohort ships beside each model (``<model>-cohort.npz``); ``doorface cohort build --images DIR`` makes another one the active cohort of a state
directory (``<state>/cohort.npz``) and ``doorface cohort reset`` goes back to the shipped one.

The same cohort also measures the other side of a comparison, the face at the door (:func:`crowding`): how close
the face comes to the strangers it is most like. The margin rule of :mod:`edge.door.decision` asks the face to beat its
best enrolled person over both the second enrolled person and these strangers, so a face that looks like many
people must match more clearly, and a household of one person still has something to be measured against.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edge.errors import DoorfaceError, GalleryError
from edge.vision.faces import largest
from edge.vision.images import image_files, read_rgb
from edge.vision.sidecar import content_digest

FORMAT = "doorface-cohort"
FORMAT_VERSION = 2               # 2: the meta is sealed (content_sha256); 1 had only the embeddings' digest
FILENAME = "cohort.npz"          # the state directory's own cohort (from `doorface cohort build`)
ESTIMATOR = "normal-tail"        # threshold = mean + z * sd of the person's scores against the cohort
TAIL_Z = 3.38                    # chosen on LFW folds 3-5 for TARGET_FAR pooled (models/README.md, bench.calibration)
TARGET_FAR = 1e-4                # per-comparison false-accept rate each person's threshold is set for
MIN_COHORT = 50                  # fewer faces cannot say much about a person's mean and spread


class CohortError(GalleryError):
    """A missing, corrupt or tampered cohort, or one made with another model."""


@dataclass(frozen=True)
class Cohort:
    embeddings: np.ndarray       # (N, D) float32, unit length
    meta: dict
    path: Optional[Path] = None

    @property
    def sha256(self) -> str:
        return self.meta["embeddings_sha256"]

    @property
    def z(self) -> float:
        """The tail multiplier of the calibration: the code's, never the file's (:func:`load` refuses another)."""
        return TAIL_Z

    @property
    def far(self) -> float:
        """The per-comparison false-accept rate people are calibrated for: the code's, never the file's."""
        return TARGET_FAR

    def threshold(self, templates: np.ndarray) -> float:
        """This cohort's threshold for a person enrolled with ``templates`` (see :func:`calibrate`)."""
        return calibrate(templates, self.embeddings, self.z)

    def describe(self) -> str:
        m = self.meta
        return (f"{m.get('count', len(self.embeddings))} faces from {m.get('name') or m.get('source', '?')} "
                f"(model {str(m.get('model_sha256', '?'))[:12]}, sha256 {self.sha256[:12]})")


def calibrate(templates: np.ndarray, cohort: np.ndarray, z: float = TAIL_Z) -> float:
    """The score a person enrolled with ``templates`` (T x D, unit length) must reach so that a stranger from the
    cohort's population reaches it about as rarely as :data:`TARGET_FAR` per comparison: ``mean + z * sd`` of the
    person's scores against the cohort faces. Pure; not floored (the caller takes the stricter of this and the
    global threshold)."""
    t = np.asarray(templates, np.float32).reshape(-1, cohort.shape[1])
    scores = (np.asarray(cohort, np.float64) @ t.T.astype(np.float64)).max(axis=1)   # a stranger: their best template
    if len(scores) < MIN_COHORT:
        raise CohortError(f"a cohort of {len(scores)} faces is too small to calibrate (need at least {MIN_COHORT})")
    return float(min(scores.mean() + z * scores.std(), 1.0))


def calibrate_pot(templates: np.ndarray, cohort: np.ndarray, k: int = 20, far: float = TARGET_FAR) -> float:
    """The estimator used before the normal tail, kept to measure against it (``bench.calibration``): the ``k``
    highest scores above the (k+1)-th taken as exponential, ``u + mean(excess) * ln(k / (N * far))``."""
    t = np.asarray(templates, np.float32).reshape(-1, cohort.shape[1])
    scores = (np.asarray(cohort, np.float32) @ t.T).max(axis=1)
    n = len(scores)
    if n <= k:
        raise CohortError(f"a cohort of {n} faces is too small to calibrate (need more than {k})")
    top = -np.sort(-scores)[:k + 1]
    u = float(top[k])
    excess = float(np.mean(top[:k] - u))
    return float(min(u + excess * np.log(k / (n * far)), 1.0)) if n * far < k else u


def crowding(faces: np.ndarray, cohort: np.ndarray, k: int) -> np.ndarray:
    """How crowded the neighbourhood of each face (N x D or D, unit length) is: the mean cosine similarity to its
    ``k`` closest cohort faces. Pure; a scalar for one face."""
    if int(k) < 1:
        raise ValueError(f"crowding needs k >= 1, got {k}")
    f = np.asarray(faces, np.float32)
    sims = np.atleast_2d(f) @ np.asarray(cohort, np.float32).T
    k = min(int(k), sims.shape[1])
    top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
    out = top.mean(axis=1)
    return float(out[0]) if f.ndim == 1 else out


def digest(embeddings: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(embeddings, "<f2").tobytes()).hexdigest()


def seal(meta: dict) -> dict:
    """``meta`` of the current format with its ``content_sha256`` (the digest of everything else in it)."""
    meta = {**{k: v for k, v in meta.items() if k != "content_sha256"}, "format": FORMAT,
            "format_version": FORMAT_VERSION}
    return {**meta, "content_sha256": content_digest(meta)}


def make(embeddings: np.ndarray, meta: dict) -> Cohort:
    """A cohort in memory (embeddings normalised, rounded to float16 as stored, digest computed, sealed); not yet
    written. ``estimator``, ``z`` and ``far`` are always the code's."""
    e = np.asarray(embeddings, np.float32)
    if e.ndim != 2 or len(e) < MIN_COHORT:
        raise CohortError(f"a cohort needs at least {MIN_COHORT} faces, got {len(e)}")
    e = (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype("<f2")
    meta = {"count": int(len(e)), "dim": int(e.shape[1]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **{k: v for k, v in meta.items() if k != "k"}, "estimator": ESTIMATOR, "z": TAIL_Z, "far": TARGET_FAR,
            "embeddings_sha256": digest(e)}
    return Cohort(e.astype(np.float32), seal(meta))


def write(cohort: Cohort, path, mode: int = 0o600) -> Cohort:
    """Write ``cohort`` atomically, sealed over what is written; mode 0600 (a door's own cohort lives with its
    biometric data), 0644 for the one shipped beside a model."""
    path = Path(path)
    e = np.ascontiguousarray(cohort.embeddings, "<f2")
    if digest(e) != cohort.meta.get("embeddings_sha256"):
        raise CohortError(f"cohort for {path}: its embeddings do not match its recorded digest; not written")
    meta = seal(cohort.meta)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, embeddings=e, meta=np.array(json.dumps(meta, sort_keys=True)))
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return Cohort(cohort.embeddings, meta, path)


def save(path, embeddings: np.ndarray, meta: dict, mode: int = 0o600) -> Cohort:
    """:func:`make` then :func:`write`."""
    return write(make(embeddings, meta), path, mode)


def _read(path: Path) -> tuple:
    """``(embeddings, meta)`` as stored; anything unreadable (a truncated file, a flipped bit the zip's CRC or the
    array header catches, a meta that is not a JSON object) is one :class:`CohortError` line."""
    try:
        with np.load(path, allow_pickle=False) as z:
            e, meta = z["embeddings"], json.loads(str(z["meta"]))
    except Exception as exc:  # BadZipFile, ValueError, KeyError, EOFError, zlib.error, UnicodeDecodeError, ...
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise CohortError(f"corrupt cohort {path}: {exc.__class__.__name__}{': ' + msg if msg else ''}") from None
    if not isinstance(meta, dict):
        raise CohortError(f"corrupt cohort {path}: its meta is not a JSON object")
    return e, meta


def verify(e: np.ndarray, meta: dict, path) -> None:
    """The checks :func:`load` makes of a cohort's content: format, seal, embeddings digest and shape, and the
    code's calibration parameters."""
    if meta.get("format") != FORMAT or meta.get("format_version") not in (1, FORMAT_VERSION):
        raise CohortError(f"{path} is not a doorface cohort of format version {FORMAT_VERSION}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CohortError(f"cohort {path} is of format version {meta['format_version']}, which is not sealed: build it "
                          "again (`doorface cohort build --images DIR`) or go back to the shipped one "
                          "(`doorface cohort reset`)")
    if meta.get("content_sha256") != content_digest(meta):
        raise CohortError(f"cohort {path} does not match its seal (content_sha256): corrupt or edited, refusing it")
    if e.ndim != 2 or e.dtype != np.dtype("<f2") or len(e) != meta.get("count") or e.shape[1] != meta.get("dim") \
            or digest(e) != meta.get("embeddings_sha256") or not np.isfinite(e).all():
        raise CohortError(f"cohort {path} does not match its recorded digest (corrupt or edited)")
    if meta.get("estimator") != ESTIMATOR or meta.get("z") != TAIL_Z or meta.get("far") != TARGET_FAR or "k" in meta:
        was = ", ".join(f"{k}={meta.get(k)!r}" for k in ("estimator", "z", "k", "far") if k in meta)
        raise CohortError(f"cohort {path} records calibration {was or 'none'}; this door calibrates with "
                          f"{ESTIMATOR} z={TAIL_Z} at FAR {TARGET_FAR:g}: build it again")


def load(path, model_sha256: Optional[str] = None) -> Cohort:
    """Read and verify a cohort (:func:`verify`); with ``model_sha256``, refuse one made with another model."""
    path = Path(path)
    if not path.is_file():
        raise CohortError(f"cohort not found: {path}")
    e, meta = _read(path)
    verify(e, meta, path)
    if model_sha256 is not None and meta.get("model_sha256") != model_sha256:
        raise CohortError(f"cohort {path} was made with another model ({str(meta.get('model_sha256'))[:12]}...); "
                          "build one for this model (`doorface cohort build --images DIR`) or `doorface cohort reset`")
    return Cohort(e.astype(np.float32), meta, path)


def reseal(path) -> Cohort:
    """Seal a cohort of format version 1 in place (``python -m convert.cohort --reseal FILE``): the same embeddings,
    byte for byte (galleries calibrated against it stay valid: its ``sha256`` is theirs), the same meta plus its seal,
    the same file mode. Refuses a file whose embeddings do not match their digest or that records calibration
    parameters other than the code's."""
    path = Path(path)
    e, meta = _read(path)
    if meta.get("format_version") == 1:
        verify(e, seal(meta), path)
    else:
        verify(e, meta, path)
    return write(Cohort(e.astype(np.float32), meta), path, path.stat().st_mode & 0o777)


def shipped_path(model_path) -> Path:
    """The default cohort that ships beside a model: ``models/x.tflite`` -> ``models/x-cohort.npz``."""
    p = Path(model_path)
    return p.with_name(p.stem + "-cohort.npz")


def active(state_dir, model_path, model_sha256: str) -> Optional[Cohort]:
    """The cohort a door calibrates against: the state directory's own (``cohort build``) when there is one, else
    the one shipped beside the model, else None (no cohort: the global threshold alone decides)."""
    own = Path(state_dir) / FILENAME
    if own.exists():
        return load(own, model_sha256)
    shipped = shipped_path(model_path)
    return load(shipped, model_sha256) if shipped.exists() else None


def embed_folder(root, analyzer, progress=None):
    """``(embeddings, images, skipped)``: the largest face of every image under ``root`` (recursively), through the
    door's own pipeline (``analyzer``: detection, alignment, embedding; no quality gate, as strangers come)."""
    files = image_files(root, recursive=True)
    embs, skipped = [], 0
    for f in (progress(files) if progress else files):
        try:
            rgb = read_rgb(f)
        except DoorfaceError:
            skipped += 1
            continue
        faces = analyzer.faces(rgb)
        if not faces:
            skipped += 1
            continue
        embs.append(analyzer.describe(rgb, largest(faces), gate=False).embedding)
    return embs, len(files), skipped


def estimated_accept(threshold: float, meta: dict) -> Optional[float]:
    """Share of genuine single-photo scores at or above ``threshold``, from the genuine-score quantiles the
    shipped cohort records for its model (None when it records none)."""
    q = meta.get("genuine_quantiles")
    if not q:
        return None
    q = np.asarray(q, np.float64)
    return float(1.0 - np.interp(threshold, q, np.linspace(0, 1, len(q)), left=0.0, right=1.0))
