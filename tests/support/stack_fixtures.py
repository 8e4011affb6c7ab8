"""Fixtures of every suite that launches stacks (end-to-end and browser tests)."""

import shutil

import pytest

from tests.support.launcher import SHARED_MODELS_DIR


@pytest.fixture(scope="session", autouse=True)
def shared_models_dir():
    """The demo model the first launched stack trains, removed when the session ends."""
    yield SHARED_MODELS_DIR
    shutil.rmtree(SHARED_MODELS_DIR, ignore_errors=True)
