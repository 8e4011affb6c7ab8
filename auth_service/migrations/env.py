from auth_service.database import Base
from auth_service.users import models  # noqa: F401  (registers the tables on Base.metadata)
from common.migrations import run_migrations

run_migrations(Base.metadata)
