"""The declarative base of the slide service's tables (database `slides`)."""

from common.db import declarative_base

Base = declarative_base()
