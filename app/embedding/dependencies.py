"""The process's encoder, created in the lifespan, as a dependency."""

from typing import Annotated

from fastapi import Depends, Request

from app.embedding.encoder import Encoder


# async for the reason given in app/core/deps.py: no thread hop per request.
async def get_encoder(request: Request) -> Encoder:
    encoder: Encoder = request.app.state.encoder
    return encoder


EncoderDep = Annotated[Encoder, Depends(get_encoder)]
