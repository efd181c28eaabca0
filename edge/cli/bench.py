"""``doorface bench``: this board's speed per stage at 1 thread and at ``"auto"`` (the board's cores), as a markdown
block to paste into an issue. The timing itself is :mod:`edge.vision.speed`."""
from __future__ import annotations

from edge.cli.common import load_config


def add_parsers(sub, common) -> None:
    p = sub.add_parser("bench", parents=[common], help="time detector, embedding, liveness and a whole frame on this "
                                                       "board (1 thread and auto); prints a markdown block")
    p.add_argument("--iterations", type=int, default=30, help="timed runs per stage after one warm-up (default 30)")
    p.add_argument("--image", metavar="FILE", help="a photo with one face (default: the sample obama.jpg, fetched "
                                                   "once into the cache)")


def cmd_bench(args) -> int:
    from edge.build import build_analyzer
    from edge.config import threads
    from edge.errors import DoorfaceError
    from edge.vision import speed
    from edge.vision.images import read_rgb

    if args.iterations < 1:
        raise DoorfaceError("--iterations must be at least 1")
    cfg = load_config(args)
    if args.image:
        path = args.image
    else:
        from edge.vision.assets import fetch_samples

        path = str(fetch_samples() / "obama.jpg")
    cam = cfg["camera"]
    frame = speed.letterbox(read_rgb(path), cam["width"], cam["height"])

    def analyzer(n: int):
        c = {**cfg, "model": {**cfg["model"], "threads": n}}
        return build_analyzer(c)

    note = f"{cam['width']}x{cam['height']} ({path.rsplit('/', 1)[-1]})"
    try:
        out = speed.run(analyzer, frame, [1, threads("auto")], args.iterations, note)
    except ValueError as exc:
        raise DoorfaceError(f"bench: {exc}") from None
    print(out)
    return 0


COMMANDS = {"bench": cmd_bench}
