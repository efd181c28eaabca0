"""``doorface cohort``: the stranger cohort per-person thresholds are set against: build (from a folder of
faces), show, reset (back to the cohort shipped beside the model)."""
from __future__ import annotations

from pathlib import Path

from edge.cli.common import analyzer_and_gallery, load_config, progress
from edge.cli.people import recalibrated
from edge.errors import DoorfaceError


def add_parsers(sub, common) -> None:
    p = sub.add_parser("cohort", parents=[common],
                       help="the stranger cohort per-person thresholds are set against: build, show, reset")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = csub.add_parser("build", parents=[common],
                        help="embed every face under a folder (one per image) and make it this door's cohort")
    r.add_argument("--images", required=True, metavar="DIR", help="folder of face images (searched recursively)")
    r.add_argument("--source", help="provenance to record (default: the folder's path), e.g. where the images "
                                    "came from and under which licence")
    csub.add_parser("show", parents=[common])
    csub.add_parser("reset", parents=[common], help="go back to the cohort shipped beside the model")


def _embed_cohort(args, analyzer) -> tuple:
    """``(embeddings, meta)`` of the folder's faces, with the provenance recorded."""
    from edge.people import cohort as co

    emb = analyzer.embedder
    shipped = co.shipped_path(emb.model_path)
    base = co.load(shipped, emb.sha256).meta if shipped.exists() else {}
    root = Path(args.images)
    if not root.is_dir():
        raise DoorfaceError(f"no such folder: {root}")
    embs, files, skipped = co.embed_folder(root, analyzer, progress("cohort"))
    if len(embs) < co.MIN_COHORT:
        raise DoorfaceError(f"{len(embs)} faces found in {files} images under {root}: a cohort needs at "
                            f"least {co.MIN_COHORT} (a few hundred of people like those at this door is better)")
    meta = {"source": args.source or str(root.resolve()), "images": files, "skipped": skipped,
            "model_sha256": emb.sha256, "model_file": Path(emb.model_path).name,
            "built_by": "doorface cohort build"}
    if base.get("genuine_quantiles"):
        meta["genuine_quantiles"] = base["genuine_quantiles"]
        meta["genuine_source"] = base.get("genuine_source", "")
    return embs, meta


def _build(args, cfg) -> int:
    import numpy as np

    from edge.people import cohort as co
    from edge.vision.sidecar import operating_point

    analyzer, g = analyzer_and_gallery(cfg, create=True)
    emb = analyzer.embedder
    embs, meta = _embed_cohort(args, analyzer)
    thr = operating_point(emb.meta, cfg["match"])[0]
    target = Path(cfg["state"]["dir"]) / co.FILENAME
    with g:
        index = g.index(emb.sha256)
        enrolled = [m.identity for m in map(index.match, embs) if m.identity is not None and m.score >= thr]
        cohort = co.make(np.stack(embs), meta)
        if cfg["match"]["calibration"] == "off":
            co.write(cohort, target)
            n = 0
        else:   # the file is written last inside the gallery's transaction: if it fails, nothing changed
            n = g.recalibrate(cohort, emb.sha256, then=lambda: co.write(cohort, target))
        cohort = co.load(target, emb.sha256)
        print(f"cohort: {len(embs)} faces from {meta['images']} images under {args.images} ({meta['skipped']} "
              f"without a face) -> {cohort.path}; recalibrated {n} people")
        if enrolled:
            print(f"warning: {len(enrolled)} cohort faces match enrolled people "
                  f"({', '.join(sorted(set(enrolled))[:3])}): take them out of the folder and build again "
                  "(a person's own photos in the cohort make their threshold needlessly strict)")
        recalibrated(cfg, g, cohort)
    return 0


def _reset(cfg, emb) -> int:
    from edge.build import calibration_line, load_cohort
    from edge.people import cohort as co
    from edge.people import gallery as gal

    state = Path(cfg["state"]["dir"])
    own = state / co.FILENAME
    if own.exists():
        own.unlink()
        print(f"removed {own}")
    cohort = load_cohort(cfg, state, emb)
    path = state / gal.FILENAME
    if not path.exists():
        print(calibration_line(cfg, cohort))
        return 0
    with gal.Gallery(path) as g:
        n = g.recalibrate(cohort, emb.sha256) if cfg["match"]["calibration"] != "off" else 0
        print(f"recalibrated {n} people; {calibration_line(cfg, cohort)}")
        recalibrated(cfg, g, cohort)
    return 0


SHOWN = ("name", "source", "licence", "count", "identities", "images", "skipped", "model_file", "model_sha256",
         "created", "built_by", "estimator", "z", "far", "embeddings_sha256")


def _show(cfg, emb) -> int:
    from edge.build import calibration_line
    from edge.people import cohort as co

    state = Path(cfg["state"]["dir"])
    cohort = co.active(state, emb.model_path, emb.sha256)
    if cohort is None:
        print(f"no cohort: none built in {state} and none shipped beside {emb.model_path}")
        return 0
    print(f"cohort: {cohort.path} ({'this door' if cohort.path.parent == state else 'shipped with the model'})")
    for key in SHOWN:
        if key in cohort.meta:
            print(f"  {key}: {cohort.meta[key]}")
    print(calibration_line(cfg, cohort))
    return 0


def cmd_cohort(args) -> int:
    from edge.config import threads
    from edge.vision.embedder import Embedder

    cfg = load_config(args)
    if args.action == "build":
        return _build(args, cfg)
    emb = Embedder(cfg["model"]["embedder"], threads(cfg["model"]["threads"])).load()
    return _reset(cfg, emb) if args.action == "reset" else _show(cfg, emb)


COMMANDS = {"cohort": cmd_cohort}
