"""What `make run` gives each process: every service the gateway calls, and the slide
service's database, storage and token check like the data service's."""

import re

import pytest

from devstack import ROOT, prometheus
from devstack.__main__ import print_urls
from devstack.stack import BY_NAME, COMPONENTS, GATEWAY_DOWNSTREAMS, build_stack

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_the_gateway_is_given_the_url_of_every_service_it_calls(tmp_path):
    stack = build_stack({"SLIDE_PORT": "18003"}, SERVER, tmp_path)
    assert set(GATEWAY_DOWNSTREAMS) == {"auth", "inference", "data", "slides"}
    for name, setting in GATEWAY_DOWNSTREAMS.items():
        assert stack.env[setting] == stack.url(name)
    assert stack.env["GATEWAY_SLIDE_URL"] == "http://127.0.0.1:18003"
    # A configured URL is left alone.
    configured = {"GATEWAY_SLIDE_URL": "http://slides.internal:8003"}
    assert build_stack(configured, SERVER, tmp_path).env["GATEWAY_SLIDE_URL"] == (
        "http://slides.internal:8003"
    )


def test_the_slide_service_runs_like_the_data_service(tmp_path):
    slides = BY_NAME["slides"]
    assert (slides.module, slides.env_prefix, slides.default_port, slides.database) == (
        "slide_service",
        "SLIDE_",
        8003,
        "slides",
    )
    stack = build_stack({}, SERVER, tmp_path)
    assert stack.env["SLIDE_STORAGE_DIR"] == str(tmp_path / "slides")
    assert stack.env["SLIDE_AUTH_URL"] == stack.env["DATA_AUTH_URL"] == stack.url("auth")
    assert stack.env["SLIDE_DATABASE_URL"].endswith("/slides")
    assert "SLIDE_MIGRATION_DATABASE_URL" not in stack.service_env
    kept = build_stack({"SLIDE_STORAGE_DIR": "/srv/slides"}, SERVER, tmp_path)
    assert kept.env["SLIDE_STORAGE_DIR"] == "/srv/slides"


def test_the_local_prometheus_scrapes_the_slide_service_on_its_port(tmp_path):
    stack = build_stack({"SLIDE_PORT": "18003"}, SERVER, tmp_path)
    jobs = {job["job_name"]: job for job in prometheus.local_config(stack)["scrape_configs"]}
    assert jobs["slides"]["static_configs"] == [{"targets": ["127.0.0.1:18003"]}]


@pytest.mark.parametrize("name", ["auth", "inference", "data", "slides"])
def test_the_banner_names_each_internal_service(tmp_path, capsys, name):
    stack = build_stack({}, SERVER, tmp_path)
    print_urls(stack, prometheus=False)
    printed = capsys.readouterr().out
    assert f"  {name:<15} {stack.url(name)}   (internal)" in printed


def test_make_migrate_migrates_every_database_the_stack_runs():
    makefile = (ROOT / "Makefile").read_text()
    (listed,) = re.findall(r"^SERVICES_WITH_DATABASE := (.+)$", makefile, re.MULTILINE)
    assert listed.split() == [c.module for c in COMPONENTS if c.database]
    for module in listed.split():
        assert (ROOT / module / "migrate.py").is_file(), module
