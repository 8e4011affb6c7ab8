"""An account's `Authorization` header against a launched stack, logged in again shortly
before its access token expires.

Fixtures that live for a module or a package hand the same account to tests that may run many
minutes later on a slow machine; a token fetched once at set-up would expire on the way. The
header is a read-only mapping, so it goes wherever a headers dict goes (`headers=admin`,
`{**admin, ...}`)."""

import time
from collections.abc import Callable, Iterator, Mapping

import httpx

from tests.support.tokens import bearer

# Renewed this long before expiry, so a request that takes a while never carries a token
# that expires on its way; a quarter of the lifetime for lifetimes shorter than four times it.
RENEW_MARGIN_S = 60.0


class RenewingLogin(Mapping[str, str]):
    def __init__(
        self,
        login: Callable[[], httpx.Response],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._login = login
        self._clock = clock
        self._tokens: dict | None = None
        self._renew_at = 0.0
        self.logins = 0

    def tokens(self) -> dict:
        """The current token pair, logging in first when the access token is close to expiry."""
        if self._tokens is None or self._clock() >= self._renew_at:
            asked_at = self._clock()
            response = self._login()
            assert response.status_code == 200, f"login failed: {response.text}"
            self._tokens = response.json()
            lifetime = float(self._tokens["expires_in"])
            self._renew_at = asked_at + lifetime - min(RENEW_MARGIN_S, lifetime / 4)
            self.logins += 1
        return self._tokens

    @property
    def access_token(self) -> str:
        return self.tokens()["access_token"]

    @property
    def refresh_token(self) -> str:
        return self.tokens()["refresh_token"]

    def _header(self) -> dict[str, str]:
        return bearer(self.access_token)

    def __getitem__(self, key: str) -> str:
        return self._header()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._header())

    def __len__(self) -> int:
        return 1
