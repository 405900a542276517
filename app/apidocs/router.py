"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), their scripts and styles served from here.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet (an
air-gapped newsroom, a laptop on a train) they were blank. The files come from the
``fastapi-offline`` package, which ships them; its version pins theirs.
"""

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


def _base(request: Request) -> str:
    # Behind a proxy that mounts the service under a prefix, the pages' URLs keep it.
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    base = _base(request)
    app: FastAPI = request.app
    return get_swagger_ui_html(
        openapi_url=f"{base}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=f"{base}/docs/oauth2-redirect",
        swagger_js_url=f"{base}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
        # Swagger UI would otherwise send the schema to validator.swagger.io for its badge.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    base = _base(request)
    app: FastAPI = request.app
    return get_redoc_html(
        openapi_url=f"{base}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{base}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


def install_api_docs(app: FastAPI) -> None:
    """The pages and their assets (create the app with ``docs_url=None, redoc_url=None``)."""
    app.include_router(router)
    # StaticFiles answers If-None-Match with 304: the 1.5 MB of Swagger UI is sent once.
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
