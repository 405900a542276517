"""Process-wide resources created in the lifespan, as dependencies.

Dependencies that do no I/O are ``async def`` all the same: FastAPI runs a plain ``def`` one in
its thread pool, a thread hop per dependency per request (about 14% of the API's CPU on the
related path, measured with py-spy while bench/related.py ran).
"""

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
