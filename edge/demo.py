"""The bundled demo: enroll a sample person from real photos, run the door on a generated clip with the mock
relay, print the access decisions and the relay's timeline. Offline once the samples are cached.

    python -m edge.demo [--out demo-out] [--model models/doorface-dlib-int8.tflite]

Sample photos: the test images of the ``face_recognition==1.3.0`` source distribution (obama.jpg, obama2.jpg,
obama3.jpg, biden.jpg), fetched once into the cache. Obama is enrolled from obama.jpg and obama2.jpg. The clip
re-captures obama.jpg the way a door camera sees an enrolled person again (every frame a new small rotation, scale,
shift, exposure, sensor noise and MJPG compression), shows biden.jpg (never enrolled), and shows obama3.jpg, a
different photo of him taken years apart: whether that one opens the door depends on the model's accuracy (the
default dlib ResNet port recognises him; the small model, ``--model models/doorface-int8.tflite``, does not reach
its threshold: a false reject, the door stays shut). The demo prints the model and the score of every decision,
so what the model does is visible, not assumed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

FPS = 10
W, H = 640, 480

#: (seconds, sample or None for an empty doorway)
SCRIPT = (
    (1.0, None),
    (2.0, "obama.jpg"),    # the enrolled person seen again by the door camera: grant
    (2.0, None),
    (2.0, "biden.jpg"),    # a stranger: deny, never grant
    (2.0, None),
    (2.0, "obama3.jpg"),   # the enrolled person in a photo years apart: up to the model (never a stranger's grant)
    (4.0, None),           # longer than the cooldown, whatever happened before
    (2.0, "obama.jpg"),    # back after the cooldown: grant again
    (0.5, None),
)


def face_patch(rgb: np.ndarray, detector) -> np.ndarray:
    """The photo cropped around its face so the face fills about 45% of the frame height."""
    from edge.faces import largest

    face = largest(detector.detect(rgb))
    if face is None:
        raise RuntimeError("no face in a sample photo")
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    side = max(face.width, face.height) / 0.45
    x0, y0 = int(max(0, cx - side * 0.67)), int(max(0, cy - side * 0.5))
    x1, y1 = int(min(rgb.shape[1], cx + side * 0.67)), int(min(rgb.shape[0], cy + side * 0.5))
    patch = rgb[y0:y1, x0:x1]
    scale = H / patch.shape[0]
    return cv2.resize(patch, (int(patch.shape[1] * scale), H), interpolation=cv2.INTER_AREA)


def background(rng) -> np.ndarray:
    g = np.linspace(70, 140, W, dtype=np.float32)[None, :, None]
    bg = np.broadcast_to(g, (H, W, 3)).copy()
    bg[:, :, 2] += 10
    return np.clip(bg + rng.normal(0, 2, bg.shape), 0, 255).astype(np.uint8)


def compose(patch: np.ndarray, rng, bg: np.ndarray | None = None) -> np.ndarray:
    """One door-camera frame (H x W RGB) showing ``patch`` (from :func:`face_patch`): a new small rotation, scale
    and position each call, then exposure and sensor noise."""
    frame = background(rng) if bg is None else bg.copy()
    ang, s = rng.uniform(-4, 4), rng.uniform(0.9, 1.0)
    ph0, pw0 = patch.shape[:2]
    m = cv2.getRotationMatrix2D((pw0 / 2, ph0 / 2), ang, s)
    p = cv2.warpAffine(patch, m, (pw0, ph0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    ph, pw = p.shape[:2]
    x = int(np.clip((W - pw) / 2 + rng.normal(0, 6), 0, max(0, W - pw)))
    y = int(np.clip((H - ph) / 2 + rng.normal(0, 4), 0, max(0, H - ph)))
    pw_, ph_ = min(pw, W - x), min(ph, H - y)
    frame[y:y + ph_, x:x + pw_] = p[:ph_, :pw_]
    return np.clip(frame.astype(np.float32) * rng.uniform(0.8, 1.1) + rng.normal(0, 3, frame.shape),
                   0, 255).astype(np.uint8)


def door_capture(samples_dir, name: str, detector, seed: int = 0) -> np.ndarray:
    """A single door-camera frame of a sample photo (RGB), as :func:`make_clip` renders them, JPEG-compressed."""
    rng = np.random.default_rng(seed)
    bgr = cv2.imread(str(Path(samples_dir) / name))
    frame = compose(face_patch(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector), rng)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def make_clip(samples_dir, out_path, detector, fps: int = FPS, seed: int = 0) -> list:
    """Write the demo clip (MJPG AVI, 640x480) and return the ground truth per frame (sample name or None)."""
    rng = np.random.default_rng(seed)
    patches = {}
    truth = []
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out_path}")
    try:
        for seconds, name in SCRIPT:
            for _ in range(int(round(seconds * fps))):
                frame = background(rng)
                if name:
                    if name not in patches:
                        bgr = cv2.imread(str(Path(samples_dir) / name))
                        patches[name] = face_patch(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector)
                    frame = compose(patches[name], rng, frame)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                truth.append(name)
    finally:
        writer.release()
    return truth


def main(argv=None) -> int:
    from edge import cli
    from edge.assets import fetch_samples
    from edge.detector import BlazeFaceDetector

    ap = argparse.ArgumentParser(prog="python -m edge.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-out")
    ap.add_argument("--model", default="models/doorface-dlib-int8.tflite")
    ap.add_argument("--fast", action="store_true", help="do not play the clip in real time")
    args = ap.parse_args(argv)
    out = Path(args.out)
    state = out / "state"
    for f in ("gallery.sqlite", "access.sqlite"):
        (state / f).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    samples = fetch_samples()
    print(f"sample photos: {samples}")
    clip = out / "door.avi"
    truth = make_clip(samples, clip, BlazeFaceDetector("models/face_detection_short_range.tflite"))
    print(f"generated clip: {clip} ({sum(s for s, _ in SCRIPT):.1f} s at {FPS} fps: "
          + ", ".join(n.removesuffix(".jpg") if n else "empty" for _, n in SCRIPT) + ")")
    common = ["--config", str(Path(__file__).with_name("default.toml")), "--state-dir", str(state),
              "--model", args.model]
    print("\n$ doorface enroll obama --images obama.jpg obama2.jpg")
    code = cli.main(["enroll", "obama", "--images", str(samples / "obama.jpg"), str(samples / "obama2.jpg"), *common])
    if code:
        return code
    events = out / "events.jsonl"
    events.unlink(missing_ok=True)
    print(f"\n$ doorface run --source {clip} --relay mock --events-out {events}")
    code = cli.main(["run", *common, "--source", str(clip), "--relay", "mock", "--events-out", str(events),
                     "--timeline", *([] if args.fast else ["--realtime"])])
    print("\naccess decisions:")
    for line in events.read_text().splitlines():
        e = json.loads(line)
        shown = truth[e["frame"]] if e["frame"] < len(truth) else None
        print(f"  t={e['frame'] / FPS:5.1f}s frame {e['frame']:3d}  {e['decision']:<7} "
              f"{e['identity'] or '-':<8} score {e['score']:.3f}   (at the door: {shown or 'nobody'})")
    return code


if __name__ == "__main__":
    sys.exit(main())
