"""Process-wide resources created in the lifespan, as dependencies."""

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.embedding.encoder import Encoder


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_encoder(request: Request) -> Encoder:
    encoder: Encoder = request.app.state.encoder
    return encoder


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EncoderDep = Annotated[Encoder, Depends(get_encoder)]
