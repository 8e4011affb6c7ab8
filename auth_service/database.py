"""The declarative base of the auth service's tables (database `auth`)."""

from common.db import declarative_base

Base = declarative_base()
