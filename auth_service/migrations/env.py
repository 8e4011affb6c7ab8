from auth_service.database import Base
from auth_service.models import *  # noqa: F403  (registers every table on Base.metadata)
from common.migrations import run_migrations

run_migrations(Base.metadata)
