"""Downstream calls: retried only when repeating is safe, and a circuit breaker that makes
a dead service fail fast, then closes when it is back."""

import socket
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from devstack.postgres import free_port
from gateway.plumbing.downstream import Downstreams, DownstreamTimeout, DownstreamUnavailable
from gateway.settings import GatewaySettings
from tests.unit.gateway.test_readiness import FakeDownstream


class HangUpServer:
    """Accepts each connection, reads the request and closes without answering: a service
    that died while handling it. Counts the requests it got."""

    def __init__(self, answer: bytes = b"", delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                self.requests += 1
                time.sleep(self.delay_s)
                if self.answer:
                    connection.sendall(self.answer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()


def downstreams_for(url: str, **settings) -> Downstreams:
    defaults = {"retry_backoff_s": 0.01, "breaker_threshold": 3, "breaker_reset_s": 0.5}
    return Downstreams(
        GatewaySettings(inference_url=url, **{**defaults, **settings}), CollectorRegistry()
    )


async def test_a_lost_connection_is_retried_only_for_idempotent_calls():
    server = HangUpServer()
    downstreams = downstreams_for(server.url, retry_attempts=3)
    try:
        with pytest.raises(DownstreamUnavailable, match="inference"):
            await downstreams.call("inference", "GET", "/models", idempotent=True)
        assert server.requests == 3
        with pytest.raises(DownstreamUnavailable):
            await downstreams.call("inference", "POST", "/x", idempotent=False)
        assert server.requests == 4  # sent once: it may have been processed
    finally:
        server.close()
        await downstreams.close()


async def test_a_refused_connection_is_retried_even_when_not_idempotent():
    downstreams = downstreams_for(f"http://127.0.0.1:{free_port()}", retry_attempts=2)
    try:
        with pytest.raises(DownstreamUnavailable) as refused:
            await downstreams.call("inference", "POST", "/x", idempotent=False)
        assert refused.value.status_code == 503
        assert downstreams.metrics.retries.labels("inference")._value.get() == 1
    finally:
        await downstreams.close()


async def test_a_slow_service_gives_504_without_a_retry():
    server = HangUpServer(delay_s=1.0)
    downstreams = downstreams_for(server.url, retry_attempts=3)
    try:
        with pytest.raises(DownstreamTimeout, match="inference") as slow:
            await downstreams.call("inference", "GET", "/models", idempotent=True, timeout_s=0.2)
        assert slow.value.status_code == 504
        assert server.requests == 1
    finally:
        server.close()
        await downstreams.close()


async def test_the_circuit_opens_after_failures_and_closes_when_the_service_is_back():
    port = free_port()
    downstreams = downstreams_for(f"http://127.0.0.1:{port}", retry_attempts=1)
    try:
        for _ in range(3):
            with pytest.raises(DownstreamUnavailable) as failed:
                await downstreams.call("inference", "GET", "/ready", idempotent=True)
            assert failed.value.headers is None  # a real attempt
        with pytest.raises(DownstreamUnavailable) as fast:
            await downstreams.call("inference", "GET", "/ready", idempotent=True)
        assert fast.value.headers == {"Retry-After": "1"}  # the circuit is open
        assert downstreams.metrics.errors.labels("inference", "circuit_open")._value.get() == 1

        with FakeDownstream() as service:
            downstreams.clients["inference"] = downstreams.clients["inference"].__class__(
                base_url=service.url
            )
            time.sleep(0.6)  # past breaker_reset_s: the next call tests the service
            answer = await downstreams.call("inference", "GET", "/ready", idempotent=True)
            assert answer.status_code == 200
            again = await downstreams.call("inference", "GET", "/ready", idempotent=True)
            assert again.status_code == 200
    finally:
        await downstreams.close()


async def test_an_error_answer_is_the_service_being_there():
    server = HangUpServer(
        answer=b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"
    )
    downstreams = downstreams_for(server.url, retry_attempts=3)
    try:
        for _ in range(5):  # more than the breaker threshold
            answer = await downstreams.call("inference", "GET", "/x", idempotent=True)
            assert answer.status_code == 500
        assert server.requests == 5  # neither retried nor cut off by the breaker
        assert downstreams.metrics.errors.labels("inference", "server_error")._value.get() == 5
    finally:
        server.close()
        await downstreams.close()
