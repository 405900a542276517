"""Process-wide resources created in the lifespan, as dependencies.

Dependencies that do no I/O are ``async def`` all the same: FastAPI runs a plain ``def`` one in
its thread pool, a thread hop per dependency per request (about 14% of the API's CPU on the
related path, measured with py-spy while bench/related.py ran).
"""

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.embedding.encoder import Encoder


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_encoder(request: Request) -> Encoder:
    encoder: Encoder = request.app.state.encoder
    return encoder


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EncoderDep = Annotated[Encoder, Depends(get_encoder)]
