# CPU-only image: serves the API on port 8000 (`related db upgrade`, run as its own step before a
# release's processes start, migrates: the compose file's `migrate` service). DATABASE_URL is
# required: the image has no embedded PostgreSQL (the `embedded` extra is not installed), so it
# exits with a clear error instead of keeping articles in a private database.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RELATED_HOST=0.0.0.0 \
    RELATED_PORT=8000 \
    RELATED_MIGRATE_ON_START=false

WORKDIR /srv/related

# The serving set, every package at the version and hash of requirements-image.lock (no dev,
# eval or embedded extras); torch's CPU build from the CPU wheel index, never a CUDA one.
COPY requirements-image.lock ./
RUN pip install --require-hashes --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements-image.lock

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-deps --no-build-isolation -e .

RUN useradd --create-home --uid 10001 related
USER related

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"

# Not migrating here: every replica of every release would try at each start. Migrations are a
# release step (docs/operations.md, "Migrations"): `docker run ... related db upgrade`.
CMD ["related", "serve"]
