"""Runs a service's app factory under uvicorn with the service's settings."""

import uvicorn

from common.logging import configure_logging
from common.settings import ServiceSettings


def serve(app_factory: str, service: str, settings: ServiceSettings) -> None:
    """`app_factory` is `module:function`; uvicorn imports it in the serving process."""
    configure_logging(service, settings.log_level)
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        # Our JSON logging is already configured, and requests are logged by our middleware.
        log_config=None,
        access_log=False,
        # X-Forwarded-For is handled inside the app (see common.app), where tests see it too.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
