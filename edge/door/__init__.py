"""The door: the camera, the decision policy, the relay, the access log, systemd notify, the daemon and the
events seam (what the door tells and is told; the local socket). Imports ``edge.people``, ``edge.vision`` and the
base modules, never ``edge.build`` or ``edge.cli``: the daemon is given its parts by ``edge.build``."""
