"""The service on a real Citus cluster: a coordinator and two workers made of the embedded
PostgreSQL's binaries with Citus built from the vendored source (app.db.citus_cluster; the build
is cached between runs).

The API's main tests (ingest, lists, related with filters, recommend, sites, the pipeline,
migrations) run again here, on the cluster: the test functions of their modules are
imported below, and this module's fixtures (the cluster's database, an app on it) replace the
single-node ones for them. Then what only a cluster shows: the distributed layout, per-site
routing, the pipeline's claim across shards with two workers, migrations up and down, and
related answers compared with the single-node ones for one corpus.

Without the Citus source (../shared/vendor beside the repository, or RELATED_CITUS_TARBALL)
these tests are skipped with the reason, except under CI=true, where they fail.
"""

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.models import Scope
from app.core.config import Settings
from app.db import migrate
from app.db.citus_cluster import CitusCluster, CitusUnavailable, built_binaries
from app.db.url import to_async_url
from app.main import create_app
from app.related.repository import Filters, RelatedRepository
from app.related.statistics import load_corpus_idf
from tests.conftest import (
    CountingEmbedder,
    article,
    bearer,
    counting_embedder,
    create_key,
    fresh_database,
    running_app,
    settings_for,
)

# The API's main tests, run again on the cluster (their own fixtures come along).
from tests.test_articles_api import (  # noqa: F401
    test_batch_reports_each_item_in_order_and_keeps_valid_ones,
    test_concurrent_upserts_of_one_external_id_leave_one_article,
    test_create_then_get_by_id_and_by_external_id,
    test_cursor_pagination_visits_every_article_once,
    test_delete_removes_the_article,
    test_identical_resend_changes_nothing_and_does_not_reembed,
    test_list_filters,
)
from tests.test_migrations import test_upgrade_downgrade_upgrade_without_drift  # noqa: F401
from tests.test_pipeline import (  # noqa: F401
    base_settings,
    empty,
    test_a_new_model_reembeds_in_the_background_and_never_mixes_models,
    test_a_text_the_model_rejects_is_failed_with_its_reason_and_the_rest_embedded,
    test_a_vector_of_an_older_text_never_overwrites_a_newer_edit,
    test_a_worker_killed_mid_batch_loses_nothing_and_nothing_is_embedded_twice,
    test_a_worker_stopped_cleanly_hands_its_batch_back_at_once,
    test_ingest_answers_pending_and_a_worker_makes_it_ready,
    test_related_reembed_requeues_other_models_with_progress,
    test_wait_true_answers_ready_and_times_out_as_pending,
)
from tests.test_recommend import (  # noqa: F401
    test_a_negative_pushes_its_story_down,
    test_explain_on_recommend,
    test_filters_apply,
    test_the_history_is_never_returned_by_id_or_external_id,
    test_unknown_refs_are_ignored_and_listed_and_no_known_positive_is_404,
)
from tests.test_related_api import (  # noqa: F401
    examples,
    test_article_without_a_current_embedding_is_409_not_an_empty_list,
    test_by_id_answers_as_by_external_id,
    test_by_id_pending_is_409_and_unknown_is_404_even_with_invalid_filters,
    test_category_and_language,
    test_draft_text_finds_the_story,
    test_draft_with_filters_and_exclusions,
    test_exclude_ids_by_id_and_by_external_id,
    test_hybrid_and_vector_rankings_return_the_same_articles_in_their_own_order,
    test_items_come_in_descending_score_whatever_the_ranking,
    test_limit,
    test_max_age_days,
    test_min_score,
    test_same_story_ranks_above_other_stories,
    test_source_and_exclude_source,
    test_the_one_statement_path_answers_for_stored_articles_only,
    test_time_window,
    test_vector_ranking_is_by_score_and_never_the_article_itself,
)
from tests.test_sites import (  # noqa: F401
    keys,
    stored,
    test_a_key_of_two_sites,
    test_an_aggregator_sees_its_sites_and_can_narrow_them,
    test_cursors_do_not_cross_sites,
    test_lists_related_and_drafts_show_the_keys_sites_only,
    test_nothing_of_another_site_by_id_or_external_id,
    test_writes_go_to_the_keys_sites_only,
)

pytestmark = pytest.mark.citus

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci-stories.jsonl"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitusCluster]:
    try:
        bin_dir = built_binaries()
    except CitusUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Citus cluster: {exc}")
        pytest.skip(f"no Citus cluster: {exc}")
    nodes = CitusCluster(tmp_path_factory.mktemp("citus"), workers=2, bin_dir=bin_dir).start()
    yield nodes
    nodes.stop()


def citus_database(cluster: CitusCluster, name: str, migrated: bool = True) -> str:
    url = to_async_url(cluster.create_database(name))
    if migrated:
        migrate.upgrade(url)
    return url


# --- the single-node fixtures, replaced for this module --------------------------------------


@pytest.fixture(scope="module")
def database_url(cluster: CitusCluster) -> str:
    return citus_database(cluster, "related_test")


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(database_url, tmp_path_factory.mktemp("unused"), distribution="citus")


@pytest.fixture(scope="module")
def embedder(settings: Settings) -> CountingEmbedder:
    return counting_embedder(settings)


@pytest.fixture(scope="module")
async def app(settings: Settings, embedder: CountingEmbedder) -> AsyncIterator[Any]:
    async with running_app(settings, embedder) as application:
        yield application


@pytest.fixture(scope="module")
async def admin_token(app: Any) -> str:
    return await create_key(app, Scope.ADMIN, name="test-admin")


@pytest.fixture(scope="module")
def api_headers(admin_token: str) -> dict[str, str]:
    return bearer(admin_token)


@pytest.fixture(scope="module")
def pipeline_url(cluster: CitusCluster) -> str:
    return citus_database(cluster, "related_pipeline")


@pytest.fixture
def scratch_url(cluster: CitusCluster) -> str:
    return citus_database(cluster, "related_migrations", migrated=False)


# --- what only a cluster shows ---------------------------------------------------------------


async def scalar(app: Any, sql: str) -> Any:
    async with app.state.database.engine.connect() as conn:
        return await conn.scalar(text(sql))


async def test_articles_are_distributed_by_site_with_their_settings_on_every_shard(
    app: Any,
) -> None:
    assert app.state.database.distributed
    column = await scalar(
        app, "SELECT column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition "
        "WHERE logicalrelid = 'articles'::regclass",
    )  # fmt: skip
    assert column == "site"
    assert await scalar(app, "SELECT count(*) FROM citus_shards WHERE table_name = 'articles'::regclass") == 4  # fmt: skip  # noqa: E501
    # What Citus does not pass on by itself: set on each shard by migration 0016.
    per_shard = await scalar(
        app,
        "SELECT array_agg(DISTINCT result) FROM run_command_on_shards('articles', $$SELECT "
        "string_agg(attname || ':' || attstorage::text || ':' || coalesce(attstattarget, -1), "
        "',' ORDER BY attname) "
        "FROM pg_attribute WHERE attrelid = '%s'::regclass "
        "AND attname IN ('embedding', 'search_vector')$$)",
    )
    assert per_shard == ["embedding:m:-1,search_vector:x:100"]
    # Every shard has its own HNSW graph.
    graphs = await scalar(
        app,
        "SELECT sum(result::int) FROM run_command_on_shards('articles', $$SELECT count(*) FROM "
        "pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE i.indrelid = '%s'::regclass AND a.amname = 'hnsw'$$)",
    )
    assert graphs == 4


async def test_a_sites_related_query_goes_to_one_shard_and_an_aggregators_to_all(
    app: Any,
) -> None:
    # A literal vector: Citus fails the EXPLAIN of a multi-shard statement ordered by a bound
    # binary vector (the statement itself runs).
    vector = "'[" + ",".join(["1"] * 384) + "]'::vector"
    async with app.state.database.read_pool.acquire() as conn:
        one = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT id FROM articles WHERE site = 'a' "
            f"ORDER BY embedding <=> {vector} LIMIT 10"
        )
        every = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT id FROM articles "
            f"ORDER BY embedding <=> {vector} LIMIT 10"
        )
    assert task_counts(json.loads(one)) == [1], one
    assert task_counts(json.loads(every)) == [4], every


def task_counts(plan: Any) -> list[int]:
    """The Task Count of every distributed job in an EXPLAIN (FORMAT JSON)."""
    if isinstance(plan, list):
        return [n for item in plan for n in task_counts(item)]
    if not isinstance(plan, dict):
        return []
    own = [plan["Task Count"]] if "Task Count" in plan else []
    return own + [n for value in plan.values() for n in task_counts(value)]


async def test_word_statistics_and_row_estimates_are_read_from_the_shards(
    app: Any, client: httpx.AsyncClient
) -> None:
    batch = [
        article(
            f"w-{n}", f"Harbour ferry {'strike' if n % 2 else 'timetable'} {n}", site=f"s{n % 3}"
        )
        for n in range(90)
    ]
    token = await create_key(app, Scope.ADMIN, name="w", sites=None)
    for start in range(0, len(batch), 30):
        response = await client.post(
            "/v1/articles/batch",
            json={"articles": batch[start : start + 30]},
            headers=bearer(token),
        )
        assert response.status_code == 200, response.text
    async with app.state.database.engine.connect() as conn:
        await conn.execute(text("COMMIT"))
        await conn.execute(text("ANALYZE articles"))
    async with app.state.database.read_pool.acquire() as conn:
        idf = await load_corpus_idf(conn, distributed=True)
        repository = RelatedRepository(conn, distributed=True, ef_search=51)
        one_site = await repository.estimated_rows(
            app.state.encoder.model_name, Filters(sites=["s1"])
        )
        every = await repository.estimated_rows(app.state.encoder.model_name, Filters())
    assert idf is not None and idf.articles == 90
    # "harbour" and "ferry" in every article, "strike" in half.
    shares = dict(zip(idf.hashes.tolist(), idf.frequencies.tolist(), strict=True))
    assert sorted(shares.values())[-2:] == pytest.approx([1.0, 1.0])
    assert 0.4 < sorted(shares.values())[-3] < 0.6
    assert one_site == pytest.approx(30, abs=3)
    assert every == pytest.approx(90, abs=5)


async def test_ef_search_and_the_iterative_scan_reach_the_shards(app: Any) -> None:
    repository_settings = []
    async with app.state.database.read_pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(
            "SET LOCAL hnsw.ef_search = 77; SET LOCAL hnsw.iterative_scan = strict_order"
        )
        # A statement that runs on a worker reports the worker's settings.
        for row in await conn.fetch(
            "SELECT result FROM run_command_on_workers("
            "$$SELECT current_setting('hnsw.ef_search')$$)"
        ):
            repository_settings.append(row["result"])
        on_shard = await conn.fetchval(
            "SELECT current_setting('hnsw.ef_search') || ',' || "
            "current_setting('hnsw.iterative_scan') FROM articles WHERE site = 'x' "
            "UNION ALL SELECT '77,strict_order' LIMIT 1"
        )
    assert on_shard == "77,strict_order"


def corpus(sites: int = 3, count: int = 240) -> list[dict[str, Any]]:
    if not CORPUS.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no corpus at {CORPUS}")
        pytest.skip(f"no corpus at {CORPUS} (../shared/data beside the repository)")
    items = []
    with CORPUS.open() as lines:
        for n, line in enumerate(lines):
            if n == count:
                break
            item = json.loads(line)
            items.append(
                article(
                    item["external_id"],
                    item["title"],
                    item.get("body") or "",
                    source=item.get("source"),
                    category=item.get("category"),
                    published_at=item.get("published_at"),
                    site=f"site-{n % sites}",
                )
            )
    return items


async def ingest(app: Any, items: list[dict[str, Any]]) -> str:
    """The items stored and embedded, by an aggregator's key; the key."""
    token = await create_key(app, Scope.ADMIN, name="agg", sites=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(token)
    ) as http:
        for start in range(0, len(items), 50):
            response = await http.post(
                "/v1/articles/batch?wait=true",
                json={"articles": items[start : start + 50]},
                timeout=600,
            )
            assert response.status_code == 200, response.text
    return token


async def answers(
    app: Any, token: str, items: list[dict[str, Any]], queries: int
) -> dict[str, list[str]]:
    """ranking=vector related of the first ``queries`` articles (external ids unique across the
    sites), by an aggregator's key across every site and narrowed to the article's own site."""
    out: dict[str, list[str]] = {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(token)
    ) as http:
        for item in items[:queries]:
            for scope in ("all", "own"):
                params: dict[str, Any] = {"ranking": "vector", "limit": 10}
                if scope == "own":
                    params["site"] = item["site"]
                found = await http.get(f"/v1/articles/{item['external_id']}/related", params=params)
                assert found.status_code == 200, found.text
                out[f"{scope}:{item['external_id']}"] = [
                    i["external_id"] for i in found.json()["items"]
                ]
    return out


async def vectors(app: Any) -> list[tuple[str, str, str]]:
    async with app.state.database.engine.connect() as conn:
        rows = await conn.execute(text("SELECT site, external_id, embedding::text FROM articles"))
        return [(site, eid, vector) for site, eid, vector in rows.all()]


async def exact(app: Any, items: list[dict[str, Any]], queries: int) -> dict[str, list[str]]:
    """The same lists by exact cosine over every stored vector."""
    rows = await vectors(app)
    ids = [eid for _, eid, _ in rows]
    sites = [site for site, _, _ in rows]
    matrix = np.array([json.loads(v) for _, _, v in rows], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    index = {eid: n for n, (_, eid, _) in enumerate(rows)}
    out: dict[str, list[str]] = {}
    for item in items[:queries]:
        at = index[item["external_id"]]
        scores = matrix @ matrix[at]
        scores[at] = -2
        for scope in ("all", "own"):
            kept = scores.copy()
            if scope == "own":
                kept[[s != item["site"] for s in sites]] = -2
            out[f"{scope}:{item['external_id']}"] = [ids[n] for n in np.argsort(-kept)[:10]]
    return out


def recall(found: dict[str, list[str]], truth: dict[str, list[str]]) -> float:
    hits = sum(len(set(found[k]) & set(truth[k])) for k in truth)
    return hits / sum(len(v) for v in truth.values())


async def test_related_answers_match_one_postgresql_and_exact_search(
    cluster: CitusCluster, pg_server: Any, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    items = corpus()
    urls = {
        "citus": await asyncio.to_thread(citus_database, cluster, "related_recall"),
        "single": fresh_database(pg_server, "related_recall"),
    }
    await asyncio.to_thread(migrate.upgrade, urls["single"])
    async with contextlib.AsyncExitStack() as stack:
        apps, tokens = {}, {}
        for name, url in urls.items():
            settings = Settings(database_url=url, migrate_on_start=False, data_dir=tmp_path / "u")
            apps[name] = create_app(settings, embedder=embedder)
            await stack.enter_async_context(apps[name].router.lifespan_context(apps[name]))
            assert apps[name].state.database.distributed == (name == "citus")
            tokens[name] = await ingest(apps[name], items)
        # The int8 model's vectors depend a little on which texts share its batch: the single
        # node gets the cluster's, so that both search the same vectors.
        async with apps["single"].state.database.engine.begin() as conn:
            for _, external_id, vector in await vectors(apps["citus"]):
                await conn.execute(
                    text(
                        "UPDATE articles SET embedding = CAST(:v AS vector) WHERE external_id = :e"
                    ),
                    {"v": vector, "e": external_id},
                )
        found = {name: await answers(app, tokens[name], items, 60) for name, app in apps.items()}
        truth = {name: await exact(app, items, 60) for name, app in apps.items()}
    assert truth["citus"] == truth["single"]
    assert recall(found["citus"], truth["citus"]) >= 0.98
    assert recall(found["single"], truth["single"]) >= 0.98
    assert recall(found["citus"], found["single"]) >= 0.98


async def test_two_pipeline_workers_share_the_shards_without_double_claims(
    pipeline_url: str, tmp_path: Path
) -> None:
    from app.pipeline.repository import PipelineRepository
    from tests.fakes import HashEmbedder

    settings = Settings(
        database_url=pipeline_url,
        migrate_on_start=False,
        data_dir=tmp_path / "unused",
        embedding_worker_in_process=False,
    )
    application = create_app(settings, embedder=HashEmbedder())
    async with application.router.lifespan_context(application):
        database = application.state.database
        async with database.sessions() as session, session.begin():
            await session.execute(text("TRUNCATE articles"))
        token = await create_key(application, Scope.ADMIN, name="p", sites=None)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://t",
            headers=bearer(token),
        ) as http:
            batch = [
                article(f"p-{n}", f"Story {n}", f"Body {n}", site=f"s{n % 5}") for n in range(60)
            ]
            response = await http.post("/v1/articles/batch?wait=false", json={"articles": batch})
            assert response.status_code == 200, response.text

        async def claim() -> list[Any]:
            async with database.sessions() as session, session.begin():
                return await PipelineRepository(session).claim(25, 60)

        # Two claims at once, in two transactions: each article claimed once.
        first, second = await asyncio.gather(claim(), claim())
        ids = [c.id for c in first] + [c.id for c in second]
        assert len(first) == 25 and len(second) == 25
        assert len(set(ids)) == 50
        third = await claim()
        assert len(third) == 10 and not {c.id for c in third} & set(ids)
        assert await claim() == []
    engine = create_async_engine(pipeline_url)
    async with engine.connect() as conn:
        attempts = (await conn.execute(text("SELECT embedding_attempts FROM articles"))).all()
    await engine.dispose()
    assert sorted(a for (a,) in attempts) == [1] * 60
