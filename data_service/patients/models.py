import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, SmallInteger, String, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from data_service.database import Base

SEXES = ("female", "male", "other", "unknown")


class Patient(Base):
    """A pseudonymised patient: the external reference is the hospital's code, never a name."""

    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(f"sex IN {SEXES}", name="sex_known"),
        CheckConstraint("birth_year BETWEEN 1900 AND 2100", name="birth_year_plausible"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    external_ref: Mapped[str] = mapped_column(String(64), unique=True)
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    sex: Mapped[str] = mapped_column(String(16), default="unknown", server_default="unknown")
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
