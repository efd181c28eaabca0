"""Running the page: the admin's first password, the certificate, the door link, uvicorn."""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("doorface")

#: Connections and requests at once (live streams included); beyond it uvicorn answers 503: a flood of slow clients
#: cannot take the Pi's memory.
CONCURRENCY = 64


def build(cfg: dict, settings, socket_path):
    """``(app, web)`` for this config, the door link started (no socket I/O before :meth:`DoorLink.start`)."""
    from edge.web.app import create_app
    from edge.web.core import Web
    from edge.web.doorlink import DoorLink
    from edge.web.people import PeopleService

    door = DoorLink(socket_path).start()
    web = Web(cfg, settings, door, PeopleService(cfg))
    return create_app(web), web


def serve(cfg: dict, settings, socket_path, say: Callable[[str], None] = print) -> int:
    import os

    from edge.web.uploads import MAX_PIXELS

    # OpenCV's own ceiling on a decoded image, under the page's header check (read at the first decode).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
    import uvicorn

    from edge.web.auth import Accounts
    from edge.web.protocol import GuardedH11
    from edge.web.tls import fingerprint, make_certificate

    first = Accounts(settings.accounts_file).ensure_admin()
    if first is not None:
        say(f"the admin password is {first} (shown this once; `doorface web reset-password` makes a new one)")
    if settings.tls:
        line = make_certificate(settings.cert, settings.key)
        if not line.startswith("certificate kept"):
            say(line)
        say(f"certificate SHA-256 {fingerprint(settings.cert)}")
    app, web = build(cfg, settings, socket_path)
    say(f"serving {settings.url} (door socket {socket_path})")
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                            server_header=False, proxy_headers=False, timeout_graceful_shutdown=2,
                            limit_concurrency=CONCURRENCY, http=GuardedH11,
                            ssl_certfile=str(settings.cert) if settings.tls else None,
                            ssl_keyfile=str(settings.key) if settings.tls else None)
    try:
        uvicorn.Server(config).run()
    finally:
        web.door.stop()
    return 0
