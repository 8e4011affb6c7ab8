from common.migrations import run_migrations
from data_service.database import Base
from data_service.patients import models  # noqa: F401  (registers the tables on Base.metadata)

run_migrations(Base.metadata)
