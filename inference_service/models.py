"""Every table of the inference service, imported in one place for Alembic and the tests.
Each table is defined in its feature's `models.py`."""

from inference_service.registry.models import ModelVersion

__all__ = ["ModelVersion"]
