from common.migrations import run_migrations
from slide_service.database import Base
from slide_service.models import *  # noqa: F403  (registers every table on Base.metadata)

run_migrations(Base.metadata)
