"""``GET /widget.js``: the `<related-articles>` web component, one static file.

Publishers' pages load it from another origin with a plain script tag (no CORS needed for a
script); the box then calls this service's public API, anonymously or with a publishable key.
"""

from pathlib import Path

from fastapi import APIRouter, Request, Response

from app.core.caching import etag_of, matches

SCRIPT = (Path(__file__).resolve().parent / "static" / "widget.js").read_bytes()
ETAG = etag_of(SCRIPT)
HEADERS = {
    # On every article page of a site: cached a while, then revalidated by its ETag.
    "Cache-Control": "public, max-age=300",
    "ETag": ETAG,
    # Pages that isolate themselves (Cross-Origin-Embedder-Policy) may still load it.
    "Cross-Origin-Resource-Policy": "cross-origin",
}

router = APIRouter(tags=["widget"], include_in_schema=False)


@router.get("/widget.js")
async def widget_script(request: Request) -> Response:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and matches(if_none_match, ETAG):
        return Response(status_code=304, headers=HEADERS)
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=HEADERS)
