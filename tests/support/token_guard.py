"""A pytest plugin: `tests.support.tokens.mint_token` refuses to make a token while the test
modules are imported (see that module). The root conftest loads it."""

from tests.support.tokens import refuse_tokens_during_collection


def pytest_sessionstart(session) -> None:
    refuse_tokens_during_collection(True)


def pytest_collection_finish(session) -> None:
    refuse_tokens_during_collection(False)
