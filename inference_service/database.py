"""The declarative base of the inference service's tables (database `inference`)."""

from common.db import declarative_base

Base = declarative_base()
