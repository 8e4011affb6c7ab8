"""A private PostgreSQL server for tests that need one of their own (to stop it, or to run
as the postgres image does), in a temporary folder on a free port, removed afterwards."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.ports import PortReservations
from devstack.postgres import PrivatePostgres


@contextmanager
def running_private_postgres(prefix: str) -> Iterator[PrivatePostgres]:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # as root, the server runs as an unprivileged user who must reach it
    port = PortReservations()
    server = PrivatePostgres(base, port.take())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        port.release()
