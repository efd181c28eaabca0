"""doorface edge runtime: what runs on the Raspberry Pi / Jetson at the door.

Nothing here imports TensorFlow; models run through :mod:`edge.vision.runtime`.
Importing this package has no side effects.
"""

__version__ = "0.1.0"
