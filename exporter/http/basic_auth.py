"""HTTP basic authentication against bcrypt hashes, bounded in what a guesser can make it spend.

bcrypt is slow on purpose (about 70 ms at cost 10), so each verification is a target:
- a verified password is remembered (a keyed digest of user, hash and password, never the
  password), so a scraper's next requests cost a dictionary lookup, not a bcrypt; the
  memory holds at most CACHE_SIZE entries, and only passwords that were right;
- verifications run one at a time on a thread of their own, off the event loop (bcrypt
  releases the GIL), at most VERIFICATIONS_PER_SECOND: a guesser gets at most one core,
  and usually much less, whatever it sends; the loop, the probes and cached scrapers go on;
- at most MAX_WAITING wait their turn, MAX_WAITING_PER_PEER from one address; past that the
  answer is 429 at once, without a verification;
- a wrong password, a wrong user (checked against a decoy hash of the same cost) and a right
  one take the same bcrypt, so neither the password nor the user name leaks by timing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

CACHE_SIZE = 256
VERIFICATIONS_PER_SECOND = 10.0
MAX_WAITING = 8
MAX_WAITING_PER_PEER = 2
# bcrypt reads at most 72 bytes of a password; Go's refuses a longer one, and so do we.
_LONGEST_PASSWORD = 72
_COST = re.compile(rb"\$2[aby]\$(\d\d)\$")


class Verdict(Enum):
    """What a request's credentials earn it."""

    ALLOWED = "allowed"
    DENIED = "denied"  # no credentials, or wrong ones: 401
    THROTTLED = "throttled"  # too many verifications waiting: 429, nothing verified


class Users:
    """The users of one version of the web configuration, with a decoy hash of their cost."""

    def __init__(self, users: tuple[tuple[str, str], ...]) -> None:
        import bcrypt  # noqa: PLC0415 - optional (the webconfig extra), checked when loaded

        self.hashes = {name.encode(): hashed.encode() for name, hashed in users}
        costs = [int(m.group(1)) for h in self.hashes.values() if (m := _COST.match(h))]
        # A user that does not exist costs what one that does costs (no enumeration by timing).
        self.decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(max(costs, default=4)))

    def __bool__(self) -> bool:
        return bool(self.hashes)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # noqa: PLC0415 - optional, loaded once Users was built

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a password bcrypt refuses (a NUL byte)
        return False


class Verifier:
    """One listener's verifications and memory of right passwords; kept across reloads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = os.urandom(32)
        self._known: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._waiting = 0
        self._waiting_by_peer: collections.Counter[str] = collections.Counter()
        self._turn = asyncio.Lock()
        self._next_start = 0.0
        self._clock = clock
        self._thread: ThreadPoolExecutor | None = None
        self.verifications = 0  # bcrypt runs, for the self-metrics

    def check(self, users: Users, header: bytes, peer: str) -> Verdict | Awaitable[Verdict]:
        """The verdict now (remembered, malformed, or throttled), or later (a bcrypt)."""
        credentials = _credentials(header)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        hashed = users.hashes.get(user)
        digest = hmac.new(self._key, b"\0".join((user, hashed or b"", password)), hashlib.sha256)
        key = digest.digest()
        if hashed is not None and key in self._known:
            self._known.move_to_end(key)
            return Verdict.ALLOWED
        if len(password) > _LONGEST_PASSWORD:
            return Verdict.DENIED
        host = peer.rsplit(":", 1)[0]
        if self._waiting >= MAX_WAITING or self._waiting_by_peer[host] >= MAX_WAITING_PER_PEER:
            return Verdict.THROTTLED
        return self._verify(key, password, hashed, users.decoy, host)

    async def _verify(
        self, key: bytes, password: bytes, hashed: bytes | None, decoy: bytes, host: str
    ) -> Verdict:
        self._waiting += 1
        self._waiting_by_peer[host] += 1
        try:
            async with self._turn:
                wait = self._next_start - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._next_start = self._clock() + 1 / VERIFICATIONS_PER_SECOND
                self.verifications += 1
                loop = asyncio.get_running_loop()
                right = await loop.run_in_executor(
                    self._executor(), _checkpw, password, hashed or decoy
                )
        finally:
            self._waiting -= 1
            self._waiting_by_peer[host] -= 1
            if not self._waiting_by_peer[host]:
                del self._waiting_by_peer[host]
        if not right or hashed is None:
            return Verdict.DENIED
        self._known[key] = None
        if len(self._known) > CACHE_SIZE:
            self._known.popitem(last=False)
        return Verdict.ALLOWED

    def _executor(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")
        return self._thread

    def close(self) -> None:
        """Let the thread end after what it verifies now."""
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
            self._thread = None


def _credentials(header: bytes) -> tuple[bytes, bytes] | None:
    """(user, password) of `Authorization: Basic ...`, or None, as Go's BasicAuth reads it."""
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None
