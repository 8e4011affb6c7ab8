"""`.env.example` lists every setting, with the defaults the code really has."""

import re

import pytest
from dotenv import dotenv_values

from auth_service.settings import AuthSettings
from data_service.settings import DataSettings
from devstack import ROOT
from frontend.config.settings import FrontendSettings
from gateway.settings import GatewaySettings
from inference_service.settings import InferenceSettings
from slide_service.settings import SlideSettings

SETTINGS = [
    AuthSettings,
    InferenceSettings,
    DataSettings,
    SlideSettings,
    GatewaySettings,
    FrontendSettings,
]
EXAMPLE = dotenv_values(ROOT / ".env.example")
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}` in the compose file.
COMPOSE_VARIABLES = set(
    re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text())
)


def env_names(settings_class, listed_only: bool = False) -> dict[str, str]:
    """Variable -> field. A field read from several variables (AUTH_ADMIN_EMAIL or
    ADMIN_EMAIL, REDIS_URL or GATEWAY_REDIS_URL) has them all, or with `listed_only` the
    one .env.example lists."""
    prefix = settings_class.model_config["env_prefix"]
    names = {}
    for name, field in settings_class.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or [f"{prefix}{name}".upper()]
        if listed_only:
            aliases = [next((a for a in aliases if a in EXAMPLE), aliases[0])]
        names.update({alias: name for alias in aliases})
    return names


@pytest.mark.parametrize("settings_class", SETTINGS, ids=lambda c: c.__name__)
def test_every_setting_is_listed_with_its_default(settings_class, monkeypatch):
    for variable in env_names(settings_class):
        monkeypatch.delenv(variable, raising=False)
    defaults = settings_class(_env_file=None)
    for variable, field in env_names(settings_class, listed_only=True).items():
        assert variable in EXAMPLE, f"{variable} is missing from .env.example"
        default = getattr(defaults, field)
        assert EXAMPLE[variable] == ("" if default is None else str(default)), variable


def test_example_lists_nothing_that_no_component_reads():
    known = {name for cls in SETTINGS for name in env_names(cls)} | COMPOSE_VARIABLES
    launcher_and_tests = {
        name for name in EXAMPLE if name.startswith(("DEVSTACK_", "TEST_", "MLFLOW_"))
    }
    assert set(EXAMPLE) - known - launcher_and_tests == {"DATABASE_URL"}


def test_every_variable_the_compose_file_reads_is_listed():
    assert {"POSTGRES_PASSWORD", "IMAGE_TAG"} <= COMPOSE_VARIABLES
    assert COMPOSE_VARIABLES - set(EXAMPLE) == set()


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("GATEWAY_PORT", "9123")
    monkeypatch.setenv("GATEWAY_DATA_URL", "http://data.internal:8002")
    settings = GatewaySettings(_env_file=None)
    assert settings.port == 9123
    assert settings.data_url == "http://data.internal:8002"


def test_a_wrong_type_in_the_environment_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("AUTH_PORT", "eighty")
    with pytest.raises(ValueError, match="port"):
        AuthSettings(_env_file=None)
