"""One exception tree. Every error the CLI reports as a one-line message derives from DoorfaceError."""


class DoorfaceError(Exception):
    """Base class: the CLI prints ``str(error)`` and exits non-zero."""


class ConfigError(DoorfaceError, ValueError):
    """Bad configuration file or value (the message names the key)."""


class ModelError(DoorfaceError, RuntimeError):
    """Missing or corrupt model, missing sidecar, or sha256 mismatch."""


class RuntimeNotFound(ModelError, ImportError):
    """No TFLite runtime (ai_edge_litert, tflite_runtime or tensorflow) is importable."""


class GalleryError(DoorfaceError, RuntimeError):
    """Corrupt gallery, gallery made with another model, or unknown person."""


class EnrollmentError(DoorfaceError, ValueError):
    """An enrollment was refused (no face, several faces, duplicate person, unreadable file)."""


class CameraError(DoorfaceError, IOError):
    """A camera source could not be opened or stopped delivering frames."""


class RelayError(DoorfaceError, RuntimeError):
    """The relay backend could not be set up."""
