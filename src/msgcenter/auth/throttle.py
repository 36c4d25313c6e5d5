"""Failed-logon throttling after OWASP's authentication guidance: progressive delays, not lockouts.

Failures are counted in a sliding window per (login, client address) and, with a
higher limit, per client address. Below its limit a key is free; past it, each
further try must wait a delay that doubles with every failure, up to a maximum,
after the key's last failure. So one client behind a NAT slows only its own
login (and, past the address limit, its own address a little), nobody can lock a
known login out from another address, and a guesser gets a handful of tries per
minute instead of thousands. A success clears its (login, address) key.

Counts live in this process: with several web workers a guesser gets the limits
per worker, which still bounds guessing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from msgcenter.errors import TooManyFailedLoginsError

#: a client address, as the zones give it or as text
Address = IPv4Address | IPv6Address | str


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Free failures per key and window, and the delays past them."""

    #: failures per (login, address) before delays start
    login_limit: int
    #: failures per address, whatever the login, before delays start
    address_limit: int
    #: failures older than this (seconds) are forgotten
    window: float
    #: the longest delay between two tries of a throttled key (seconds)
    max_delay: float


class FailedLogonThrottle:
    """Counts failed logons and tells when a key must wait; used from any thread."""

    def __init__(self, policy: ThrottlePolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    @staticmethod
    def login_key(login: str, address: Address) -> str:
        """The key of one login tried from one address."""
        return f"login {login!r} from {address}"

    @staticmethod
    def address_key(address: Address) -> str:
        """The key of every login tried from one address."""
        return f"address {address}"

    def check(self, login: str | None, address: Address) -> None:
        """Raise :class:`TooManyFailedLoginsError` if a try of ``login`` (None: a token)
        from ``address`` must wait; its ``retry_after`` says how long."""
        now = self._clock()
        keys = [(self.address_key(address), self._policy.address_limit)]
        if login is not None:
            keys.insert(0, (self.login_key(login, address), self._policy.login_limit))
        with self._lock:
            wait = max(self._wait(key, limit, now) for key, limit in keys)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise TooManyFailedLoginsError(
                f"too many failed logons from {address}; retry in {retry_after} s",
                retry_after=retry_after,
            )

    def failed(self, login: str | None, address: Address) -> None:
        """Record one failed try of ``login`` (None: a token) from ``address``."""
        now = self._clock()
        keys = [self.address_key(address)]
        if login is not None:
            keys.append(self.login_key(login, address))
        with self._lock:
            self._sweep(now)
            for key in keys:
                failures = self._recent(key, now)
                failures.append(now)
                self._failures[key] = failures

    def succeeded(self, login: str, address: Address) -> None:
        """Forget the failures of ``login`` from ``address`` (it just logged on)."""
        with self._lock:
            self._failures.pop(self.login_key(login, address), None)

    def tracked(self) -> int:
        """How many keys have failures remembered (bounded by the sweep)."""
        with self._lock:
            return len(self._failures)

    def _wait(self, key: str, limit: int, now: float) -> float:
        failures = self._recent(key, now)
        excess = len(failures) - limit
        if excess < 0:
            return 0.0
        delay = min(2.0**excess, self._policy.max_delay)
        return failures[-1] + delay - now

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self._policy.window:
            failures.popleft()
        return failures

    def _sweep(self, now: float) -> None:
        """Drop the keys whose failures all left the window (at most once per window)."""
        if now - self._swept < self._policy.window:
            return
        self._swept = now
        for key in [k for k, failures in self._failures.items() if not self._recent(k, now)]:
            del self._failures[key]
