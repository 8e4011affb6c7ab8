"""The declarative base of the data service's tables (database `data`)."""

from common.db import declarative_base

Base = declarative_base()
