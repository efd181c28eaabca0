"""MOCK picamera2 for `make pi-check` only (never installed on a real Pi).

Raspberry Pi's python3-picamera2 comes from archive.raspberrypi.com, which a Debian arm64 root under qemu does not
have, and it needs libcamera and a camera. This stand-in lets `import picamera2` succeed so the edge path can be
installed and run exactly as on a Pi; opening it fails like a Pi with no camera attached.
"""

MOCK = "doorface pi-check mock of picamera2 (Raspberry Pi apt package python3-picamera2)"


class Picamera2:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("picamera2 is mocked under pi-check: no camera")
