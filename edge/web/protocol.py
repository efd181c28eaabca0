"""uvicorn's HTTP/1.1 protocol with the limits a page on a home network needs against slow or many connections
(uvicorn has no timeout for a request that never finishes its headers):

- a request's headers must be complete within :data:`HEADER_SECONDS` of the connection (or of the previous
  response), else the connection is closed;
- at most :data:`PER_ADDRESS` connections from one address at once; more are closed at once.

With the server's ``limit_concurrency`` (64), one machine on the network can no longer hold the page."""
from __future__ import annotations

from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0
PER_ADDRESS = 16


class GuardedH11(H11Protocol):
    per_address: Counter = Counter()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._addr = self.client[0] if self.client else "?"
        GuardedH11.per_address[self._addr] += 1
        self._header_timer = None
        if GuardedH11.per_address[self._addr] > PER_ADDRESS:
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(HEADER_SECONDS, self._headers_late)

    def _headers_late(self) -> None:
        """Still no complete request line and headers: close (a response in progress is never cut)."""
        self._header_timer = None
        if self.conn.their_state == h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            if not self.transport.is_closing():
                self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        n = GuardedH11.per_address[self._addr] - 1
        if n > 0:
            GuardedH11.per_address[self._addr] = n
        else:
            GuardedH11.per_address.pop(self._addr, None)
        super().connection_lost(exc)
