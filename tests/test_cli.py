"""The `related` command, run as a user would run it (a real process, the real model)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text

from app.db.embedded import EmbeddedPostgres
from tests.conftest import EXAMPLES, article, fresh_database, http_client


def related_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


LAST_ANALYZE = text(
    "SELECT coalesce(last_analyze, 'epoch') FROM pg_stat_user_tables WHERE relname = 'articles'"
)


async def test_ingest_jsonl_is_batched_reports_bad_lines_and_is_safe_to_rerun(
    client: AsyncClient, app: Any, database_url: str, tmp_path: Path
) -> None:
    async with app.state.database.engine.connect() as conn:
        analyzed_before = (await conn.execute(LAST_ANALYZE)).scalar_one()
    lines = EXAMPLES.read_text().splitlines()[:10]
    lines.insert(3, "{not json")
    lines.insert(6, json.dumps({"external_id": "no-title"}))
    path = tmp_path / "articles.jsonl"
    path.write_text("\n".join(lines) + "\n")

    first = related_cli("ingest", str(path), "--batch-size", "4", database_url=database_url)
    assert first.returncode == 1  # some lines were invalid
    assert "10 created, 0 updated, 0 unchanged, 2 invalid" in first.stdout
    assert "line 4: not JSON" in first.stderr
    assert "line 7: title: Field required" in first.stderr
    async with app.state.database.engine.connect() as conn:
        # A load ends with ANALYZE: word statistics for related ranking at once.
        assert (await conn.execute(LAST_ANALYZE)).scalar_one() > analyzed_before

    listed = (await client.get("/v1/articles", params={"limit": 100})).json()["items"]
    assert len(listed) == 10
    related = await client.get(f"/v1/articles/{listed[0]['external_id']}/related")
    assert related.status_code == 200 and related.json()["items"]

    valid_only = tmp_path / "valid.jsonl"
    valid_only.write_text("\n".join(EXAMPLES.read_text().splitlines()[:10]) + "\n")
    rerun = related_cli("ingest", str(valid_only), database_url=database_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 created, 0 updated, 10 unchanged, 0 invalid" in rerun.stdout


def test_db_upgrade_migrates_a_fresh_database(pg_server: EmbeddedPostgres) -> None:
    url = fresh_database(pg_server, "related_cli")
    result = related_cli("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr
    assert "articles" in pg_server.psql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database="related_cli"
    )


def test_unreachable_database_is_one_clear_line() -> None:
    result = related_cli(
        "db", "upgrade", database_url="postgresql://user:secret@127.0.0.1:1/nowhere"
    )
    assert result.returncode == 1
    assert "Cannot connect to PostgreSQL at postgresql://user:***@127.0.0.1:1/nowhere" in (
        result.stderr
    )
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_keys_create_list_revoke(app: Any, database_url: str) -> None:
    created = related_cli(
        "keys",
        "create",
        "--name",
        "cms",
        "--scope",
        "read",
        "--scope",
        "write",
        database_url=database_url,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("rk_") and len(token.splitlines()) == 1
    key_id = token.split("_")[1]
    assert f"id {key_id}, scopes read,write" in created.stderr

    async with http_client(app, token) as http:
        assert (await http.post("/v1/articles", json=article("k-1", "By key"))).status_code == 201
        assert (await http.get("/v1/articles/k-1")).status_code == 200

        listed = related_cli("keys", "list", database_url=database_url)
        assert listed.returncode == 0, listed.stderr
        [line] = [row for row in listed.stdout.splitlines() if row.startswith(key_id)]
        assert line.split("\t")[1:3] == ["cms", "read,write"]
        assert line.endswith("\tactive\t-\tdefault")  # a secret key: no origins; `default`
        assert token.split("_", 2)[2] not in listed.stdout  # the secret is never shown again

        revoked = related_cli("keys", "revoke", key_id, database_url=database_url)
        assert revoked.returncode == 0 and f"revoked {key_id} (cms)" in revoked.stdout
        assert (await http.get("/v1/articles/k-1")).status_code == 401
        relisted = related_cli("keys", "list", database_url=database_url).stdout
        assert "\tactive" not in next(r for r in relisted.splitlines() if r.startswith(key_id))

    unknown = related_cli("keys", "revoke", "nope", database_url=database_url)
    assert unknown.returncode == 1 and "no key 'nope'" in unknown.stderr
    bad_scope = related_cli(
        "keys", "create", "--name", "x", "--scope", "root", database_url=database_url
    )
    assert bad_scope.returncode == 2


async def test_keys_create_publishable(app: Any, database_url: str) -> None:
    created = related_cli(
        "keys",
        "create",
        "--name",
        "site",
        "--publishable",
        "--origin",
        "https://www.news.example",
        "--origin",
        "https://m.news.example/",
        database_url=database_url,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("pk_")
    key_id = token.split("_")[1]
    assert (
        f"id {key_id}, scopes read, sites default, publishable from https://m.news.example, "
        "https://www.news.example"
    ) in created.stderr
    listed = related_cli("keys", "list", database_url=database_url).stdout
    [line] = [row for row in listed.splitlines() if row.startswith(key_id)]
    assert line.split("\t")[2] == "read"
    assert line.endswith("\tactive\thttps://m.news.example,https://www.news.example\tdefault")

    for args, complaint in (
        (["--publishable", "--scope", "write", "--origin", "https://a.example"], "only read"),
        (["--publishable"], "needs one"),
        (["--publishable", "--origin", "www.news.example"], "not an origin"),
        (["--origin", "https://a.example", "--scope", "read"], "only with --publishable"),
        ([], "give at least one"),
        (["--scope", "read", "--site", "a", "--all-sites"], "not both"),
        (["--scope", "read", "--site", " "], "1 to 255 characters"),
    ):
        refused = related_cli("keys", "create", "--name", "x", *args, database_url=database_url)
        assert refused.returncode == 2, args
        assert complaint in " ".join(refused.stderr.split()), refused.stderr


async def test_keys_list_escapes_control_characters_in_names(database_url: str) -> None:
    hostile = "ops\x1b[2J\x1b[31m\tadmin\r\nfake-line"
    created = related_cli(
        "keys", "create", "--name", hostile, "--scope", "read", database_url=database_url
    )
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.strip().split("_")[1]
    listed = related_cli("keys", "list", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(key_id)]
    assert "ops\\x1b[2J\\x1b[31m\\tadmin\\r\\nfake-line" in line
    assert "\x1b" not in listed.stdout and "\r" not in listed.stdout
    assert len(line.split("\t")) == 7  # the columns stay the columns


async def test_keys_create_for_sites(app: Any, database_url: str) -> None:
    two = related_cli(
        "keys", "create", "--name", "group", "--scope", "read", "--site", "b", "--site", "a",
        database_url=database_url,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert "sites a,b" in two.stderr
    every = related_cli(
        "keys", "create", "--name", "agg", "--scope", "write", "--all-sites",
        database_url=database_url,
    )  # fmt: skip
    assert every.returncode == 0, every.stderr
    assert "sites *" in every.stderr
    listed = related_cli("keys", "list", database_url=database_url).stdout.splitlines()
    for created, sites in ((two, "a,b"), (every, "*")):
        key_id = created.stdout.strip().split("_")[1]
        [line] = [row for row in listed if row.startswith(key_id)]
        assert line.split("\t")[6] == sites
    async with http_client(app, every.stdout.strip()) as http:
        stored = await http.post("/v1/articles", json={**article("s-1", "Elsewhere"), "site": "zz"})
        assert stored.status_code == 201, stored.text
    async with http_client(app, two.stdout.strip()) as http:
        assert (await http.get("/v1/articles/s-1")).status_code == 404
