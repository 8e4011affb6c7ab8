"""Typed dependencies for what routes take from the app (`app.state`), so a route's
signature states what it uses."""

from typing import Annotated

from fastapi import Depends

from common.deps import app_state
from inference_service.serving.service import Serving
from inference_service.settings import InferenceSettings

SettingsDep = Annotated[InferenceSettings, Depends(app_state("settings"))]
ServingDep = Annotated[Serving, Depends(app_state("serving"))]
