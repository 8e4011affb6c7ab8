from tests.support.stack_fixtures import shared_models_dir  # noqa: F401 - a session fixture
