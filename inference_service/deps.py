"""Typed dependencies for what routes take from the app (`app.state`), so a route's
signature states what it uses."""

from typing import Annotated

from fastapi import Depends, Request

from inference_service.serving.service import Serving
from inference_service.settings import InferenceSettings


def app_settings(request: Request) -> InferenceSettings:
    return request.app.state.settings


def app_serving(request: Request) -> Serving:
    return request.app.state.serving


SettingsDep = Annotated[InferenceSettings, Depends(app_settings)]
ServingDep = Annotated[Serving, Depends(app_serving)]
