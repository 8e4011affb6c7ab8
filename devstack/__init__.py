"""The developer launcher behind `make run`: PostgreSQL, migrations, every service and the
frontend under supervisord (Prometheus too, when installed), readiness, and a clean stop on
Ctrl-C.

The end-to-end tests start the stack through this same package, so what they exercise is
what `make run` does.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
