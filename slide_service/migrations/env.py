from common.migrations import run_migrations
from slide_service.analyses.queue_schema import QUEUE_TABLES
from slide_service.database import Base
from slide_service.models import *  # noqa: F403  (registers every table on Base.metadata)

run_migrations(Base.metadata, foreign_tables=QUEUE_TABLES)
