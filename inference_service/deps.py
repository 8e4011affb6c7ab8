"""Typed dependencies for what routes take from the app (`app.state`), so a route's
signature states what it uses."""

from typing import Annotated

from fastapi import Depends

# Who may call: the same three rules in every service.
from common.auth import Admin as Admin
from common.auth import Reader as Reader
from common.auth import Writer as Writer
from common.deps import app_state
from inference_service.serving.service import Serving
from inference_service.settings import InferenceSettings

SettingsDep = Annotated[InferenceSettings, Depends(app_state("settings"))]
ServingDep = Annotated[Serving, Depends(app_state("serving"))]
