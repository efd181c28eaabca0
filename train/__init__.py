"""doorface training: a triplet-loss Siamese face embedder (TensorFlow/Keras), trained on desktop.

Reuses :mod:`edge` for detection, alignment and preprocessing so training sees the device's crops.
"""
