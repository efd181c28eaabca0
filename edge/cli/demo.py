"""The bundled demo: enroll a sample person from real photos, run the door on a generated clip with the mock
relay, print the access decisions and the relay's timeline. Offline once the samples are cached.

    python -m edge.cli.demo [--out demo-out] [--model models/doorface-dlib-int8.tflite]

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

from edge.door.democlip import FPS, SCRIPT, make_clip


def main(argv=None) -> int:
    from edge import cli
    from edge.vision.assets import fetch_samples
    from edge.vision.detector import BlazeFaceDetector

    ap = argparse.ArgumentParser(prog="python -m edge.cli.demo", description=__doc__.splitlines()[0])
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
    common = ["--config", str(Path(__file__).parent.parent / "default.toml"), "--state-dir", str(state),
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
