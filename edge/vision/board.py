"""The board the door runs on: what it is (for ``doorface bench``) and whether the edge install supports it.

Standard library only, so ``python3 -m edge.vision.board supported`` runs before anything is installed (``make install-edge``
and ``systemd/install.sh`` call it first). 32-bit ARM (Raspberry Pi OS 32-bit, armhf) is refused with one line:
ai-edge-litert ships no armv7l wheels, and tflite-runtime (which has them) stopped at 2.14 and Python 3.11.
"""
from __future__ import annotations

import os
import platform
import struct
import sys
from pathlib import Path
from typing import Optional

#: The one line a 32-bit ARM install is refused with (README, "Which board").
REFUSE_32BIT = ("doorface: 32-bit ARM ({machine}, {bits}-bit Python) is not supported: install the 64-bit Raspberry "
                "Pi OS (arm64; Pi 3, 4, 5, Zero 2 W) - ai-edge-litert has no 32-bit ARM wheels")


def unsupported(machine: Optional[str] = None, pointer_bits: Optional[int] = None) -> Optional[str]:
    """The refusal line for this interpreter's platform, or None when the edge install supports it.

    The pointer size decides, not ``uname -m`` alone: 32-bit Pi OS on a Pi 4 or 5 boots a 64-bit kernel (``aarch64``)
    under a 32-bit userland, where pip would look for armv7l wheels."""
    machine = (machine or platform.machine()).lower()
    bits = pointer_bits or struct.calcsize("P") * 8
    if machine.startswith(("arm", "aarch64")) and bits == 32 or machine.startswith(("armv6", "armv7", "armhf")):
        return REFUSE_32BIT.format(machine=machine, bits=bits)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def model_name(device_tree: str = "/proc/device-tree/model", cpuinfo: str = "/proc/cpuinfo") -> str:
    """The board's name: the device tree's model (Raspberry Pi, Jetson), else /proc/cpuinfo's ``Model`` or
    ``model name``, else the machine type."""
    name = _read(device_tree).strip("\x00 \n")
    if name:
        return name
    for line in _read(cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model", "model name") and value.strip():
            return value.strip()
    return platform.machine() or "unknown"


def cpu_count() -> int:
    """The cores this process may run on (a cgroup or ``taskset`` limit counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["supported"]:
        print("usage: python3 -m edge.vision.board supported", file=sys.stderr)
        return 2
    reason = unsupported()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
