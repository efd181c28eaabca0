"""doorface converter: a trained Keras embedder -> TFLite files the device loads, with proven parity and sidecars."""
