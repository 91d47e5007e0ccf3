"""A listener behind a web configuration file (`--web.config.file`, docs/web-config.md): its
TLS, its users, its extra headers and its rate limit, re-read when the file changes.

A WebGuard holds one version of the file, ready to serve: the TLS context new connections
get, the users, the header lines. Every `interval` it compares the contents of the file and
of every file it names with what it read; on a change it reads them again, off the event
loop, and swaps the version whole. A file that cannot be used keeps the version served,
and is logged, naming the file and the key, and counted. Whether the port speaks TLS is
decided at start-up, as the toolkit decides it: a reload cannot turn TLS on or off.

Its site (GuardedSite) answers for the site it wraps: 429 past the rate limit, 401 with
`WWW-Authenticate: Basic` without the right credentials, and the headers on every answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind
from exporter.http.basic_auth import Users, Verdict, Verifier
from exporter.http.messages import Answer, Refusal, Request, Site
from exporter.http.tls_session import TlsSession
from exporter.runtime.file_watch import fingerprint
from exporter.runtime.rate_limited_log import RateLimitedLog
from exporter.settings.web_config import RateLimit, WebConfig, WebConfigError, load_web_config
from exporter.settings.web_tls import san_problem, web_server_context

_TEXT = b"text/plain; charset=utf-8"
UNAUTHORIZED = Answer(401, b"Unauthorized\n", _TEXT, b"WWW-Authenticate: Basic\r\n")
THROTTLED = Answer(429, b"Too Many Requests\n", _TEXT, b"Retry-After: 1\r\n")
RATE_LIMITED = Answer(429, b"Too Many Requests\n", _TEXT)
_REFUSALS = ("unauthorized", "throttled", "rate_limited")

RELOADS = FamilySpec(
    f"{PREFIX}web_config_reloads",
    Kind.COUNTER,
    "Readings of a changed web configuration file, by listener and result (success, failure).",
    ("listener", "result"),
)
RELOAD_OK = FamilySpec(
    f"{PREFIX}web_config_last_reload_successful",
    Kind.GAUGE,
    "1 when the last reading of the listener's web configuration succeeded; 0 when it failed "
    "and the version read before is still served.",
    ("listener",),
)
REFUSED = FamilySpec(
    f"{PREFIX}web_requests_refused",
    Kind.COUNTER,
    "Requests a web configuration refused, by listener and reason: unauthorized (401), "
    "throttled (429: too many password verifications waiting), rate_limited (429: rate_limit).",
    ("listener", "reason"),
)
VERIFICATIONS = FamilySpec(
    f"{PREFIX}basic_auth_verifications",
    Kind.COUNTER,
    "bcrypt verifications run, by listener (a password not remembered from a verification).",
    ("listener",),
)


class _Bucket:
    """`rate_limit`: Go's rate.Limiter, a token bucket of `burst` filled every `interval`."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self._per_second, self._burst = 1 / limit.interval, float(limit.burst)
        self._tokens, self._clock = self._burst, clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_second)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


TlsSessionFactory = Callable[[], TlsSession]


@dataclasses.dataclass(frozen=True)
class _Version:
    """One reading of the file, ready to serve."""

    config: WebConfig
    tls: TlsSessionFactory | None
    users: Users | None
    headers: bytes
    bucket: _Bucket | None
    fingerprint: tuple[str, ...]


def _read(path: str, clock: Callable[[], float]) -> _Version:
    """Read the file and everything it names; WebConfigError names what is wrong."""
    # Each file's digest taken before it is read: a change after it is seen at the next look.
    seen = fingerprint([Path(path)])
    config = load_web_config(path)
    seen += fingerprint([Path(name) for name in config.files[1:]])
    tls = None
    if config.tls is not None:
        context = web_server_context(config.tls, config.path)
        sans = config.tls.allowed_sans
        check = functools.partial(san_problem, allowed=sans) if sans else None
        tls = functools.partial(TlsSession, context, check)
    return _Version(
        config=config,
        tls=tls,
        users=Users(config.users) if config.users else None,
        headers=b"".join(f"{name}: {value}\r\n".encode() for name, value in config.headers),
        bucket=_Bucket(config.rate_limit, clock) if config.rate_limit else None,
        fingerprint=seen,
    )


class WebGuard:
    """One listener's web configuration, as served now."""

    def __init__(
        self,
        path: str,
        listener: str,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[], None] = lambda: None,
    ) -> None:
        """Read the file now; WebConfigError names what is wrong with it."""
        self.path, self.listener, self._interval = path, listener, interval
        self._clock, self.on_reload = clock, on_reload  # on_reload: told after each reload
        self.version = _read(path, clock)
        self.verifier = Verifier(clock)
        self.reloads = {"success": 0, "failure": 0}
        self.last_reload_ok = True
        self.refused = dict.fromkeys(_REFUSALS, 0)
        self._log = structlog.get_logger("web_config")
        self._warnings = RateLimitedLog(self._log)

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS (decided at start-up)."""
        return self.version.tls is not None

    def tls_session(self) -> TlsSession:
        """The server side of a new connection, with the TLS of the version served now."""
        factory = self.version.tls
        assert factory is not None, "a guard without TLS makes no TLS sessions"
        return factory()

    def wrap(self, site: Site) -> GuardedSite:
        """`site`, behind this configuration."""
        return GuardedSite(site, self)

    def certificate_files(self) -> dict[str, str]:
        """The certificate files it serves and verifies with, by role, for their expiry."""
        tls = self.version.config.tls
        if tls is None:
            return {}
        prefix = "server" if self.listener == "metrics" else self.listener  # as the flags' roles
        roles = {prefix: tls.cert_file, f"{prefix}_ca": tls.client_ca_file}
        return {role: path for role, path in roles.items() if path}

    async def watch(self) -> None:
        """Re-read the file whenever it or a file it names changes; forever."""
        last = self.version.fingerprint
        while True:
            await asyncio.sleep(self._interval)
            paths = [Path(name) for name in self.version.config.files]
            current = fingerprint(paths)
            if current == last:
                continue
            last = current
            await self._reload()

    def _read_again(self) -> _Version:
        """The changed file's version (in a thread: a decoy bcrypt, certificates to load)."""
        version = _read(self.path, self._clock)
        if (version.tls is None) != (self.version.tls is None):
            raise WebConfigError(
                f"tls_server_config in {self.path}: TLS cannot be turned on or off while "
                "running; restart the exporter for that"
            )
        return version

    async def _reload(self) -> None:
        try:
            version = await asyncio.to_thread(self._read_again)
        except WebConfigError as error:
            self.reloads["failure"] += 1
            self.last_reload_ok = False
            self._log.error(
                "cannot use the changed web configuration; still serving the version read before",
                listener=self.listener,
                file=self.path,
                error=str(error),
            )
            return
        self.version = version
        self.reloads["success"] += 1
        self.last_reload_ok = True
        self._log.info("web configuration reloaded", listener=self.listener, file=self.path)
        self.on_reload()

    def refuse(self, reason: str, peer: str) -> None:
        """Count a refused request; log it at most once a minute per reason."""
        self.refused[reason] += 1
        self._warnings.log(
            ("refused", reason),
            logging.WARNING,
            "request refused by the web configuration",
            listener=self.listener,
            reason=reason,
            peer=peer,
        )

    def collect(self, families: Families) -> None:
        """Its reloads, refusals and verifications."""
        name = self.listener
        for result, count in self.reloads.items():
            families.add(RELOADS, (name, result), count)
        families.add(RELOAD_OK, (name,), 1 if self.last_reload_ok else 0)
        for reason, count in self.refused.items():
            families.add(REFUSED, (name, reason), count)
        families.add(VERIFICATIONS, (name,), self.verifier.verifications)

    def close(self) -> None:
        """Stop the verifier's thread once idle."""
        self.verifier.close()


class GuardedSite:
    """A Site behind a web configuration: the same answers, once the request may have them."""

    def __init__(self, inner: Site, guard: WebGuard) -> None:
        self._inner, self._guard = inner, guard
        self.max_body = inner.max_body
        self.server_header = inner.server_header
        # Passed through: a decorated answer is a new object, never taken for one of these.
        self.constant_answers = inner.constant_answers

    def handle(self, request: Request) -> Answer | Awaitable[Answer]:
        """Rate limit, then credentials, then the inner site's answer; headers on each."""
        guard, version = self._guard, self._guard.version
        if version.bucket is not None and not version.bucket.take():
            guard.refuse("rate_limited", request.peer)
            return _with_headers(RATE_LIMITED, version.headers)
        if version.users:
            verdict = guard.verifier.check(version.users, request.authorization, request.peer)
            if not isinstance(verdict, Verdict):
                return self._after(verdict, request, version)
            if verdict is not Verdict.ALLOWED:
                return self._refused(verdict, request, version)
        return self._answer(request, version)

    def _answer(self, request: Request, version: _Version) -> Answer | Awaitable[Answer]:
        answer = self._inner.handle(request)
        if not version.headers:
            return answer
        if isinstance(answer, Answer):
            return _with_headers(answer, version.headers)
        return _later_with_headers(answer, version.headers)

    def _refused(self, verdict: Verdict, request: Request, version: _Version) -> Answer:
        throttled = verdict is Verdict.THROTTLED
        self._guard.refuse("throttled" if throttled else "unauthorized", request.peer)
        return _with_headers(THROTTLED if throttled else UNAUTHORIZED, version.headers)

    async def _after(
        self, verdict: Awaitable[Verdict], request: Request, version: _Version
    ) -> Answer:
        result = await verdict
        if result is not Verdict.ALLOWED:
            return self._refused(result, request, version)
        answer = self._answer(request, version)
        return answer if isinstance(answer, Answer) else await answer

    def refuse(self, reason: Refusal, detail: str, peer: str) -> Answer | None:
        """The inner site's answer to a request the server refused, with the headers."""
        answer = self._inner.refuse(reason, detail, peer)
        headers = self._guard.version.headers
        return answer if answer is None or not headers else _with_headers(answer, headers)


def _with_headers(answer: Answer, headers: bytes) -> Answer:
    return dataclasses.replace(answer, headers=answer.headers + headers) if headers else answer


async def _later_with_headers(answer: Awaitable[Answer], headers: bytes) -> Answer:
    return _with_headers(await answer, headers)
