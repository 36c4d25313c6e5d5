"""Failed-logon throttling, per login and per client address, in a sliding window."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from msgcenter.errors import TooManyFailedLoginsError


class FailedLogonThrottle:
    """Refuses logons for a key after ``limit`` failures within ``window`` seconds.

    Counts live in this process: with several web workers an attacker gets
    ``limit`` tries per worker and window, which still bounds guessing.
    """

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, *keys: str) -> None:
        """Raise :class:`TooManyFailedLoginsError` if any of ``keys`` is currently blocked."""
        now = self._clock()
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if len(failures) >= self._limit:
                    retry_after = math.ceil(failures[0] + self._window - now)
                    raise TooManyFailedLoginsError(
                        f"too many failed logons for {key}; retry in {retry_after} s",
                        retry_after=retry_after,
                    )

    def failed(self, *keys: str) -> None:
        """Record one failure against each of ``keys``."""
        now = self._clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        """Forget the failures of ``key`` (a login that just logged on)."""
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        return failures
