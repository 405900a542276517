// The demo story page. Everything comes from the public API, called without a key, the way a
// publisher's frontend would call it. Text from the API is only ever set as textContent (never
// as HTML): article fields are whatever a feed sent.
"use strict";

const API = "/v1";
const RELATED_LIMIT = 5;
// A publisher's box shows other coverage of the story, not the least unrelated articles. On the
// example articles (packaged model) every same-story pair scores 0.39 or more, and 338 of the
// 342 other pairs less than 0.35.
const MIN_SCORE = 0.35;
const LATEST_LIMIT = 6;
// A 409 means the article is stored but its embedding is not made yet: ask again a few times.
const PENDING_RETRIES = 5;
const PENDING_RETRY_MS = 2000;

const byId = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(API + path, {
      ...options,
      headers: { accept: "application/json", ...(options.headers || {}) },
    });
  } catch (err) {
    throw new ApiError(0, "network_error", "The service cannot be reached.", null, null);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || "Request failed",
      error.details,
      response.headers.get("retry-after"),
    );
  }
  return body;
}

// A sentence a reader (or the developer trying the demo) can act on, for each kind of failure.
function explain(err) {
  switch (err.status) {
    case 0:
      return "The Related service cannot be reached. Is it running?";
    case 401:
      return "The API wants a key for reads, and this page sends none. Start the service " +
        "with RELATED_ANONYMOUS_READS=true (make run does) to open reads to public pages.";
    case 403:
      return "The API refused this read: anonymous callers may not read here.";
    case 404:
      return err.message;
    case 409:
      return "This article has just arrived and is still being processed (its embedding is " +
        "pending), so related articles are not available yet.";
    case 422: {
      const fields = Array.isArray(err.details)
        ? err.details.map((d) => `${d.path}: ${d.message}`).join("; ")
        : "";
      return fields ? `${err.message}: ${fields}` : err.message;
    }
    case 429:
      return `Too many requests; try again${err.retryAfter ? ` in ${err.retryAfter} s` : " shortly"}.`;
    case 503:
      return "The database is unavailable right now; try again in a moment.";
    default:
      return err.message;
  }
}

function showError(element, err) {
  element.textContent = "";
  element.classList.add("error");
  element.append(explain(err));
  const code = document.createElement("span");
  code.className = "error-code";
  code.textContent = err.status ? `HTTP ${err.status} · ${err.code}` : err.code;
  element.append(" ", code);
  element.hidden = false;
}

function clearStatus(element, text = "") {
  element.classList.remove("error");
  element.textContent = text;
}

const dateFormat = new Intl.DateTimeFormat("en-GB", {
  weekday: "long", day: "numeric", month: "long", year: "numeric",
});
const timeFormat = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit" });
const shortDate = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short" });

function storyLink(article) {
  return `/demo?article=${encodeURIComponent(article.external_id)}`;
}

function listAuthors(authors) {
  if (authors.length <= 1) return authors.join("");
  return `${authors.slice(0, -1).join(", ")} and ${authors[authors.length - 1]}`;
}

function renderStory(article) {
  const published = new Date(article.published_at);
  document.title = `${article.title} · The Related Gazette`;
  byId("story-kicker").textContent = article.category || article.source || "";
  byId("story-title").textContent = article.title;
  byId("story-summary").textContent = article.summary || "";
  byId("story-summary").hidden = !article.summary;

  const byline = byId("story-byline");
  byline.textContent = "";
  if (article.authors.length) {
    const who = document.createElement("span");
    who.className = "author";
    who.textContent = `By ${listAuthors(article.authors)}`;
    byline.append(who);
  }
  if (article.source) {
    const source = document.createElement("span");
    source.className = "source";
    source.textContent = article.source;
    byline.append(source);
  }
  const time = document.createElement("time");
  time.dateTime = article.published_at;
  time.textContent = `${dateFormat.format(published)}, ${timeFormat.format(published)}`;
  byline.append(time);

  const body = byId("story-body");
  body.textContent = "";
  for (const paragraph of article.body.split(/\n\s*\n/)) {
    if (!paragraph.trim()) continue;
    const p = document.createElement("p");
    p.textContent = paragraph.trim();
    body.append(p);
  }

  const original = byId("story-source");
  original.textContent = "";
  if (article.url) {
    const link = document.createElement("a");
    link.href = article.url;
    link.rel = "noopener nofollow";
    link.textContent = `Read the original${article.source ? ` at ${article.source}` : ""}`;
    original.append(link);
  }
  byId("story").setAttribute("aria-busy", "false");
}

function renderItems(list, items) {
  list.textContent = "";
  for (const item of items) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.className = "related-title";
    link.href = storyLink(item);
    link.textContent = item.title;
    const meta = document.createElement("p");
    meta.className = "related-meta";
    const source = document.createElement("span");
    source.textContent = item.source || "Unknown source";
    const when = document.createElement("time");
    when.dateTime = item.published_at;
    when.textContent = shortDate.format(new Date(item.published_at));
    const score = document.createElement("span");
    score.className = "score";
    score.title = "Cosine similarity of the two articles' embeddings";
    score.textContent = `similarity ${item.score.toFixed(2)}`;
    meta.append(source, when, score);
    li.append(link, meta);
    list.append(li);
  }
}

function relatedTo(article) {
  return api(
    `/articles/${encodeURIComponent(article.id)}/related` +
      `?limit=${RELATED_LIMIT}&min_score=${MIN_SCORE}`,
  );
}

function showRelated(result) {
  const status = byId("related-status");
  renderItems(byId("related-list"), result.items);
  clearStatus(status, result.items.length ? "" : "No other coverage of this story yet.");
  status.hidden = result.items.length > 0;
  document.body.dataset.related = "ready";
}

// The page without ?article= opens on the newest story that has other coverage: the newest
// article of all may be a one-off (an empty box is a poor first look at a related box). Asks
// newest first and stops at the first with related articles; the newest if none has any.
async function newestWithCoverage(articles) {
  for (const article of articles) {
    try {
      const related = await relatedTo(article);
      if (related.items.length) return { article, related };
    } catch (err) {
      // Not embedded yet, say: try the next one; the newest's own error shows if none works.
    }
  }
  return { article: articles[0] || null, related: null };
}

async function loadRelated(article, attempt = 0) {
  const status = byId("related-status");
  document.body.dataset.related = "loading";
  try {
    showRelated(await relatedTo(article));
  } catch (err) {
    if (err.status === 409 && attempt < PENDING_RETRIES) {
      showError(status, err);
      setTimeout(() => loadRelated(article, attempt + 1), PENDING_RETRY_MS);
      return;
    }
    showError(status, err);
    document.body.dataset.related = "error";
  }
}

async function loadLatest(current, latest) {
  const nav = byId("latest");
  try {
    const page = latest || (await api(`/articles?limit=${LATEST_LIMIT}`));
    for (const article of page.items) {
      const link = document.createElement("a");
      link.href = storyLink(article);
      link.textContent = article.title;
      link.title = article.title; // the strip cuts long headlines short
      if (current && article.id === current.id) link.setAttribute("aria-current", "page");
      nav.append(link);
    }
  } catch (err) {
    nav.hidden = true; // The story and its box say what went wrong; the strip just goes.
  }
}

async function loadStory() {
  const ref = new URLSearchParams(window.location.search).get("article");
  const failure = byId("story-error");
  let article = null;
  let latest = null;
  let related = null;
  try {
    if (ref) {
      article = await api(`/articles/${encodeURIComponent(ref)}`);
    } else {
      latest = await api(`/articles?limit=${LATEST_LIMIT}`);
      ({ article, related } = await newestWithCoverage(latest.items));
      if (!article) {
        byId("story-title").textContent = "No stories yet";
        failure.textContent =
          "The service holds no articles. Load the examples with " +
          "`related ingest examples/articles.jsonl` (make run does), then reload.";
        failure.hidden = false;
      }
    }
  } catch (err) {
    byId("story-title").textContent = "This story could not be loaded";
    showError(failure, err);
  }
  loadLatest(article, latest);
  if (article) {
    renderStory(article);
    if (related) showRelated(related);
    else await loadRelated(article);
  } else {
    showError(byId("related-status"), new ApiError(0, "no_article", "No story to relate to."));
    document.body.dataset.related = "error";
  }
  byId("story").setAttribute("aria-busy", "false");
}

async function submitDraft(event) {
  event.preventDefault();
  const status = byId("draft-status");
  const results = byId("draft-results");
  const button = byId("draft-submit");
  const title = byId("draft-title").value.trim();
  const body = byId("draft-body").value.trim();
  results.textContent = "";
  if (!title && !body) {
    status.classList.add("error");
    status.textContent = "Write a headline or some text first.";
    document.body.dataset.draft = "error";
    return;
  }
  document.body.dataset.draft = "loading";
  clearStatus(status, "Looking for related articles…");
  button.disabled = true;
  try {
    const result = await api("/related", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title, body, limit: RELATED_LIMIT, min_score: MIN_SCORE }),
    });
    renderItems(results, result.items);
    clearStatus(status, result.items.length
      ? `The ${result.items.length} closest stored articles:`
      : "Nothing stored is about the same story as this draft.");
    document.body.dataset.draft = "ready";
  } catch (err) {
    showError(status, err);
    document.body.dataset.draft = "error";
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  byId("today").textContent = dateFormat.format(new Date());
  document.body.dataset.draft = "idle";
  byId("draft-form").addEventListener("submit", submitDraft);
  loadStory();
});
