"""Guessing passwords against basic_auth_users costs the exporter a bounded amount of bcrypt.

bcrypt is expensive by design, so each guess is CPU an attacker spends of ours. A real
exporter process is flooded with wrong passwords on many connections at once; what it
verifies stays within its rate, the rest is answered 429 at once; the probes and a scraper
whose password was verified before go on answering, fast.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import aiohttp

from tests.support import eventually, parse_metrics
from tests.support.processes import LOCAL_PORTS, running
from tests.support.web_config import bcrypt_hash, replace_file

# SECURITY.md's bound: at most this many password verifications a second per listener.
VERIFICATIONS_PER_SECOND = 10
ATTACKERS = 16
ATTACK_SECONDS = 3.0
# Cheap enough for a shared test machine, and fast enough (about 15 ms) that without the
# rate bound one thread would verify several times the bound in the attack's time.
COST = 8


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header of these credentials."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def attack(url: str, until: float) -> dict[int, int]:
    """Wrong passwords from many connections until `until`: how many answers of each status."""
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=ATTACKERS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def guesser(number: int) -> None:
            guess = 0
            while time.monotonic() < until:
                guess += 1
                guessed = basic("alice", f"guess-{number}-{guess}")
                async with session.get(url, headers=guessed) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1

        await asyncio.gather(*(guesser(n) for n in range(ATTACKERS)))
    return statuses


async def slowest_answer(url: str, until: float, headers: dict[str, str] | None = None) -> float:
    """Ask `url` again and again until `until`; the longest wait for a 200."""
    slowest = 0.0
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            started = time.monotonic()
            async with session.get(url, headers=headers) as answer:
                await answer.read()
                assert answer.status == 200
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.05)  # a probe's pace, not a condition waited for
    return slowest


async def test_a_flood_of_wrong_passwords_is_verified_at_a_bounded_rate(tmp_path: Path) -> None:
    """16 connections guessing for 3 s: at most 10 guesses a second are checked
    (each a 401), every other one is answered 429 without a bcrypt; /liveness and a scraper
    already verified are answered within 0.5 s throughout."""
    path = tmp_path / "web.yml"
    replace_file(path, f"basic_auth_users:\n  alice: '{bcrypt_hash('wonderland', COST)}'\n")
    flags = ["--http-input-address", "127.0.0.1:0", "--web.config.file", str(path)]
    async with running(*LOCAL_PORTS, *flags, "--log-format", "json") as exporter:
        ports = await exporter.wait_for_log("serving HTTP")
        metrics = f"http://127.0.0.1:{ports['metrics_port']}/metrics"
        liveness = f"http://127.0.0.1:{ports['probes_port']}/liveness"
        alice = basic("alice", "wonderland")

        async def alice_in() -> bool:
            async with aiohttp.ClientSession() as session, session.get(metrics, headers=alice) as r:
                return r.status == 200

        await eventually(alice_in, message="alice's password verified once")
        started = time.monotonic()
        until = started + ATTACK_SECONDS
        statuses, probe_wait, scrape_wait = await asyncio.gather(
            attack(metrics, until),
            slowest_answer(liveness, until),
            slowest_answer(metrics, until, alice),
        )
        elapsed = time.monotonic() - started

        async with aiohttp.ClientSession() as session, session.get(metrics, headers=alice) as r:
            families = parse_metrics(await r.text())
    verified = families["falco_exporter_basic_auth_verifications"][
        frozenset({("listener", "metrics")})
    ]
    bound = VERIFICATIONS_PER_SECOND * elapsed + 3  # alice's own, the first of the flood, a margin
    assert verified <= bound, (verified, bound, statuses)
    assert statuses.get(401, 0) <= verified  # each wrong password answered was verified
    assert statuses.get(429, 0) > statuses.get(401, 0), statuses  # the rest waited for nothing
    assert set(statuses) <= {401, 429}, statuses
    assert probe_wait < 0.5, probe_wait
    assert scrape_wait < 0.5, scrape_wait
