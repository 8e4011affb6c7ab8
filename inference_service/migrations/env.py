from common.migrations import run_migrations
from inference_service.database import Base
from inference_service.registry import models  # noqa: F401  (registers the tables on Base.metadata)

run_migrations(Base.metadata)
