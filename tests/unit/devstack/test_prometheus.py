"""Whether `make run` starts Prometheus: only with a binary and a free port, saying why not."""

import socket

from devstack.__main__ import prometheus_binary
from devstack.postgres import free_port
from devstack.stack import build_stack


def stack(tmp_path, **env: str):
    return build_stack({"PATH": "/usr/bin:/bin", **env}, "postgresql://x@127.0.0.1/x", tmp_path)


def test_without_the_binary_the_stack_runs_without_it_and_says_so_in_one_line(tmp_path, capsys):
    missing = str(tmp_path / "no-prometheus")
    assert prometheus_binary(stack(tmp_path, DEVSTACK_PROMETHEUS=missing)) is None
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"[devstack] {missing} not found")


def test_a_named_binary_on_a_free_port_is_used(tmp_path):
    binary = tmp_path / "prometheus"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    port = str(free_port())
    chosen = stack(tmp_path, DEVSTACK_PROMETHEUS=str(binary), DEVSTACK_PROMETHEUS_PORT=port)
    assert prometheus_binary(chosen) == str(binary)
    assert chosen.url("prometheus") == f"http://127.0.0.1:{port}"


def test_a_taken_port_leaves_it_out(tmp_path, capsys):
    binary = tmp_path / "prometheus"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = str(taken.getsockname()[1])
        chosen = stack(tmp_path, DEVSTACK_PROMETHEUS=str(binary), DEVSTACK_PROMETHEUS_PORT=port)
        assert prometheus_binary(chosen) is None
    assert f"port {port} is taken" in capsys.readouterr().out


def test_the_default_port_is_9090(tmp_path):
    assert stack(tmp_path).url("prometheus") == "http://127.0.0.1:9090"
