"""Login throttling per account and address, per address, and per account across
addresses: it kicks in, it lifts, it grows, it is bounded, it counts concurrent attempts
before checking them, and a stranger's failures never lock the real user out; failed and
successful logins are counted and audited without the password."""

import asyncio
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime

from auth_service.maintenance import purge_once
from auth_service.throttling.service import account_key
from tests.support.auth import ADMIN_EMAIL, ADMIN_PASSWORD, running_auth
from tests.support.sql import fetch_async


def logins(app, outcome: str) -> float:
    value = app.state.metrics_registry.get_sample_value("auth_logins_total", {"outcome": outcome})
    return value or 0.0


async def fail(auth, email: str, times: int, address: str | None = None) -> None:
    for _ in range(times):
        response = await auth.login(email, "definitely wrong password", address)
        assert response.status_code == 401, response.text


class CountingHashing:
    """The service's password hashing, counting the passwords it checks."""

    def __init__(self, hashing) -> None:
        self.hashing = hashing
        self.verified = 0

    async def verify(self, password_hash, password):
        self.verified += 1
        return await self.hashing.verify(password_hash, password)

    async def hash(self, password):
        return await self.hashing.hash(password)


def count_verifications(auth) -> CountingHashing:
    counting = CountingHashing(auth.app.state.login.hashing)
    auth.app.state.login = replace(auth.app.state.login, hashing=counting)
    return counting


async def test_one_address_is_locked_out_of_an_account_after_five_failures_then_unlocked(auth):
    await fail(auth, ADMIN_EMAIL, 5)
    locked = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)  # even the right password
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_attempts"
    assert locked.headers["retry-after"] == "1"
    assert logins(auth.app, "throttled") == 1

    auth.clock.advance(0.9)
    assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 429
    auth.clock.advance(0.2)
    assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
    # Success cleared the account's count: four more failures do not lock it.
    await fail(auth, ADMIN_EMAIL, 4)
    assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_the_delay_doubles_with_each_further_failure(auth):
    await fail(auth, ADMIN_EMAIL, 5)
    assert (await auth.login(ADMIN_EMAIL, "x" * 12)).headers["retry-after"] == "1"
    auth.clock.advance(1.1)
    await fail(auth, ADMIN_EMAIL, 1)  # the sixth failure in a row
    refused = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"


async def test_failures_from_many_addresses_do_not_lock_the_user_out(auth):
    # The attack found on a live stack: five wrong passwords, each from another address...
    for index in range(5):
        await fail(auth, ADMIN_EMAIL, 1, address=f"203.0.113.{index + 1}")
    # ...then the real user, from yet another address, gets in.
    answer = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="198.51.100.20")
    assert answer.status_code == 200, answer.text


async def test_a_lock_on_one_address_keeps_nobody_else_out(auth):
    await fail(auth, ADMIN_EMAIL, 5, address="203.0.113.66")
    hammering = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="203.0.113.66")
    assert hammering.status_code == 429
    # The same account from another address, and another account from the locked address.
    assert (
        await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="198.51.100.20")
    ).status_code == 200
    other = await auth.login("other@example.com", "not it at all", "203.0.113.66")
    assert other.status_code == 401
    assert (
        await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="203.0.113.66")
    ).status_code == 429  # still locked: the other address's success does not lift it


async def test_the_account_wide_delay_grows_is_bounded_and_spares_known_addresses(
    auth_database_url,
):
    async with running_auth(
        auth_database_url,
        throttle_account_failures=3,
        throttle_account_base_delay_s=1.0,
        throttle_account_max_delay_s=4.0,
    ) as auth:
        home = "198.51.100.7"  # where the user signs in every day
        assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address=home)).status_code == 200
        guessers = (f"203.0.113.{n}" for n in range(1, 200))

        for _ in range(3):  # a guesser spread over addresses, one failure each
            await fail(auth, ADMIN_EMAIL, 1, address=next(guessers))
        delays = []
        for _ in range(4):
            refused = await auth.login(ADMIN_EMAIL, "another guess", next(guessers))
            assert refused.status_code == 429, refused.text
            delays.append(int(refused.headers["retry-after"]))
            # The user, from their own address, is not slowed at all.
            own = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address=home)
            assert own.status_code == 200, own.text
            auth.clock.advance(delays[-1])
            await fail(auth, ADMIN_EMAIL, 1, address=next(guessers))
        assert delays == [1, 2, 4, 4]  # doubling, capped at the max

        # From an address never used before, the user waits at most the max, then gets in.
        new_address = "192.0.2.33"
        waiting = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address=new_address)
        assert waiting.status_code == 429
        assert int(waiting.headers["retry-after"]) <= 4
        auth.clock.advance(int(waiting.headers["retry-after"]))
        assert (
            await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address=new_address)
        ).status_code == 200


async def test_concurrent_guesses_from_one_address_are_not_all_checked(auth):
    hashing = count_verifications(auth)
    answers = await asyncio.gather(
        *(auth.login(ADMIN_EMAIL, f"guess number {n}", "203.0.113.9") for n in range(20))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 5 + [429] * 15
    assert hashing.verified == 5  # the threshold, however many arrive at once


async def test_concurrent_guesses_spread_over_addresses_are_not_all_checked(auth):
    hashing = count_verifications(auth)  # the account-wide threshold is 10 by default
    answers = await asyncio.gather(
        *(auth.login(ADMIN_EMAIL, f"guess number {n}", f"203.0.113.{n}") for n in range(1, 31))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 10 + [429] * 20
    assert hashing.verified == 10


async def test_an_unknown_email_is_locked_the_same_way(auth):
    await fail(auth, "ghost@example.com", 5)
    locked = await auth.login("ghost@example.com", "anything at all here")
    assert locked.status_code == 429
    # Other accounts are not affected by one account's lock.
    assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_an_address_failing_across_accounts_is_slowed(auth_database_url):
    async with running_auth(auth_database_url, throttle_address_failures=6) as auth:
        for index in range(6):  # one failure each on six accounts: no account is locked
            await fail(auth, f"user{index}@example.com", 1, address="203.0.113.7")
        refused = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="203.0.113.7")
        assert refused.status_code == 429
        assert (
            await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="198.51.100.2")
        ).status_code == 200


async def test_an_untrusted_proxy_cannot_choose_the_address(auth_database_url):
    async with running_auth(
        auth_database_url, throttle_address_failures=3, forwarded_allow_ips="10.9.9.9"
    ) as auth:
        # X-Forwarded-For from a caller that is not a trusted proxy is ignored, so rotating it
        # does not escape the per-address count.
        for index in range(3):
            await fail(auth, f"user{index}@example.com", 1, address=f"203.0.113.{index}")
        refused = await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, address="203.0.113.99")
        assert refused.status_code == 429


async def test_logins_are_counted_and_audited_without_the_password(auth, caplog):
    caplog.clear()
    await auth.login(ADMIN_EMAIL, "a wrong secret 123")
    await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert logins(auth.app, "invalid_credentials") == 1
    assert logins(auth.app, "success") == 1

    # Each record as the service writes it: through its JSON formatter.
    formatter = logging.getLogger().handlers[0].formatter
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    audit = [line for line in lines if line["logger"] == "auth.audit"]
    events = [(line["event"], line.get("reason")) for line in audit]
    assert events == [("login_failed", "wrong_password"), ("login_succeeded", None)]
    assert audit[0]["email"] == ADMIN_EMAIL and audit[0]["client"] == "127.0.0.1"
    text = json.dumps(lines)
    assert "a wrong secret 123" not in text and ADMIN_PASSWORD not in text
    metrics = (await auth.client.get("/metrics")).text
    assert 'auth_logins_total{outcome="success"} 1.0' in metrics


async def test_stale_throttles_and_expired_refresh_tokens_are_purged(auth, auth_database_url):
    await fail(auth, "old@example.com", 2)
    await fail(auth, "recent@example.com", 1)
    await auth.tokens()
    await fetch_async(
        auth_database_url,
        "UPDATE login_throttles SET last_failure_at = now() - interval '2 hours' WHERE key = $1",
        account_key("old@example.com"),
    )
    await fetch_async(
        auth_database_url, "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"
    )
    await auth.tokens()  # a live one
    # A login from an address the account has not used for longer than it is remembered.
    assert (await auth.login(ADMIN_EMAIL, ADMIN_PASSWORD, "198.51.100.4")).status_code == 200
    await fetch_async(
        auth_database_url,
        "UPDATE known_login_addresses SET last_login_at = now() - interval '91 days' "
        "WHERE address = '198.51.100.4'",
    )
    async with auth.app.state.database.sessions() as session:
        removed = await purge_once(session, auth.app.state.login.policy, datetime.now(UTC))
    assert removed == {"refresh_tokens": 1, "login_throttles": 1, "known_login_addresses": 1}
    known = await fetch_async(auth_database_url, "SELECT address FROM known_login_addresses")
    assert [row["address"] for row in known] == ["127.0.0.1"]
    keys = {
        r["key"] for r in await fetch_async(auth_database_url, "SELECT key FROM login_throttles")
    }
    assert account_key("recent@example.com") in keys and account_key("old@example.com") not in keys
    live = await fetch_async(auth_database_url, "SELECT count(*) AS n FROM refresh_tokens")
    assert live[0]["n"] == 2
