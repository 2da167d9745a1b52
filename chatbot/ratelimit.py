"""Per-client request counts shared by every process through the accounts database, without a
database write per request.

A process adds a client's first request of the minute to the database's counter at once, reading
back every process's total; further requests it counts in memory and adds every `flush_seconds` (a
background thread), until the client's count reaches half its limit, from where each request is
added at once again. The only slack: requests another process counted in its last `flush_seconds`
while the client was under half the limit there, so at most (processes - 1) x half the limit, and
only for a quarter of a second. A database write per request took the 32-client p95 of the REST API
from 250-375 ms to 560-700 ms (SQLite's lock waits; measured in turn on 2026-11-30).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

from chatbot.accounts import AccountError, Accounts, window_start

WINDOW = dt.timedelta(minutes=1)


class RequestCounter:
    def __init__(self, accounts: Accounts, window: dt.timedelta = WINDOW, flush_seconds: float = 0.25):
        self.accounts = accounts
        self.window = window
        self.flush_seconds = flush_seconds
        self._pending: Counter[tuple[str, dt.datetime]] = Counter()  # not yet in the database
        self._known: dict[tuple[str, dt.datetime], int] = {}  # the database's count when last added to
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def wait_before(self, key: str, limit: int) -> float:
        """Count one request of `key`: 0 while within `limit` this window, else the seconds left in it.
        Raises AccountError when the database cannot be reached near the limit."""
        now = self.accounts.clock()
        slot = (key, window_start(now, self.window))
        with self._lock:
            self._pending[slot] += 1
            count = self._known.get(slot, 0) + self._pending[slot]
            first = slot not in self._known
        if first or count * 2 >= limit:  # a client new to this process learns every process's count
            count = self._add(slot)
        else:
            self._start_flusher()
        return 0.0 if count <= limit else (slot[1] + self.window - now).total_seconds()

    def flush(self) -> None:
        """Add every pending count to the database (the background thread calls this)."""
        with self._lock:
            slots = list(self._pending)
        for slot in slots:
            self._add(slot)
        current = window_start(self.accounts.clock(), self.window)
        with self._lock:
            self._known = {s: n for s, n in self._known.items() if s[1] >= current}

    def _add(self, slot) -> int:
        with self._lock:
            n = self._pending.pop(slot, 0)
            if n == 0:  # another thread added them meanwhile
                return self._known.get(slot, 0)
        total = self.accounts.add_requests(slot[0], slot[1], n)
        with self._lock:
            self._known[slot] = max(total, self._known.get(slot, 0))
            return self._known[slot] + self._pending.get(slot, 0)

    def _start_flusher(self) -> None:
        if self._flusher is None:
            with self._lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_forever, name="rate-counter", daemon=True)
                    self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except AccountError:
                pass  # counted again once the database is back; meanwhile nobody is refused for it
