"""Vision: a frame to faces, aligned crops, embeddings and liveness scores (detector, alignment, quality gates,
embedder, jitter, liveness, the TFLite runtime, model sidecars, image files, the Face record and the analyzer).
Imports nothing from ``edge.people``, ``edge.door``, ``edge.build`` or ``edge.cli``."""
