"""``/demo``: static HTML, CSS and JS served by the app (no build step, nothing from a CDN).

The page reads only through the public API (``/v1/...``), without a key, the way a publisher's
frontend would; so it works when anonymous reads are allowed and shows the API's error otherwise.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.core.errors import not_found

STATIC = Path(__file__).resolve().parent / "static"
# Only these files are served: a name from the URL never becomes an arbitrary path.
ASSETS = {"demo.css": "text/css; charset=utf-8", "demo.js": "text/javascript; charset=utf-8"}
# Revalidate every time: the files are small and the ETag makes an unchanged one a 304.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["demo"], include_in_schema=False)


@router.get("/demo")
async def demo_page() -> FileResponse:
    """The story page; `?article=<ref>` picks the article, else the most recent one."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_CACHE)


@router.get("/demo/assets/{name}")
async def demo_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise not_found("asset", name)
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=NO_CACHE)
