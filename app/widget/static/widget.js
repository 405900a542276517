// <related-articles ref="cms-48213" limit="5"></related-articles>: the related box for any page.
//
// Dependency free: a custom element with a shadow root, so the page's CSS cannot break it and
// its CSS cannot leak into the page; themed through CSS custom properties (which cross the
// shadow boundary) and ::part(). Text from the API is only ever set as textContent: article
// fields are whatever a feed sent. Attributes:
//   ref        the article: our id or your external_id (required)
//   limit      how many related articles, 1 to 20 (default 5); the box reserves their height
//   api        the service's base URL (default: where this script was loaded from)
//   key        a publishable key (pk_...), when the service does not open reads to everyone
//   min-score  leave out weaker results (the API's min_score)
//   heading    the box's title (default "Related articles")
(() => {
  "use strict";
  if (window.customElements.get("related-articles")) return;

  // Where this script came from is the default service: read now, it is null after this run.
  const script = document.currentScript;
  const DEFAULT_API = script && script.src ? new URL(".", script.src).href : location.origin + "/";
  const MAX_LIMIT = 20;
  // A story published a moment ago is stored before it is embedded (409 embedding_pending):
  // the box keeps loading and asks again, rather than showing an error to its first readers.
  const PENDING_RETRIES = 5;
  const PENDING_RETRY_MS = 2000;

  const STYLE = `
    :host {
      display: block;
      /* The content's height, reserved before the answer arrives, so the page below never
         moves (padding and border come on top, whatever the theme makes them). */
      box-sizing: content-box;
      min-height: calc(var(--related-heading-height, 2.5rem)
        + var(--_rows, 5) * var(--related-item-height, 4.5rem));
      padding: var(--related-padding, 0.75rem);
      font: var(--related-font, 400 1rem/1.35 system-ui, sans-serif);
      color: var(--related-color, #1a1a1a);
      background: var(--related-background, transparent);
      border: var(--related-border, 1px solid #d9d9d9);
      border-radius: var(--related-radius, 6px);
    }
    :host([hidden]) { display: none; }
    h2 {
      margin: 0;
      height: var(--related-heading-height, 2.5rem);
      font-size: var(--related-heading-size, 1.1rem);
      font-weight: 700;
      line-height: var(--related-heading-height, 2.5rem);
      color: var(--related-heading-color, inherit);
      overflow: hidden;
    }
    ul { list-style: none; margin: 0; padding: 0; }
    li {
      box-sizing: border-box;
      height: var(--related-item-height, 4.5rem);
      padding: 0.25rem 0;
      border-top: var(--related-divider, 1px solid #ececec);
      overflow: hidden;
    }
    a, .title {
      display: -webkit-box;
      -webkit-box-orient: vertical;
      -webkit-line-clamp: 2;
      overflow: hidden;
      color: var(--related-link-color, #0b57d0);
      text-decoration: none;
      font-weight: 600;
    }
    .title { color: inherit; }
    a:hover, a:focus-visible { text-decoration: underline; }
    a:focus-visible { outline: 2px solid var(--related-link-color, #0b57d0); outline-offset: 2px; }
    .meta {
      display: block;
      font-size: 0.85em;
      color: var(--related-muted-color, #5f6368);
      white-space: nowrap;
      overflow: hidden;
      text-overflow: ellipsis;
    }
    .skeleton {
      display: block;
      height: 0.9em;
      margin: 0.25rem 0;
      border-radius: 3px;
      background: var(--related-skeleton-color, #ececec);
    }
    .skeleton.short { width: 40%; }
    .status { margin: 0.5rem 0 0; color: var(--related-muted-color, #5f6368); }
  `;

  class RelatedArticles extends HTMLElement {
    static get observedAttributes() {
      return ["ref", "limit", "api", "key", "min-score"];
    }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      const style = document.createElement("style");
      style.textContent = STYLE;
      this.section = document.createElement("section");
      this.section.setAttribute("part", "box");
      const heading = document.createElement("h2");
      heading.id = "heading";
      heading.setAttribute("part", "heading");
      this.section.setAttribute("aria-labelledby", "heading");
      this.list = document.createElement("ul");
      this.list.setAttribute("part", "list");
      // Announced politely when loading ends in an empty box or an error.
      this.status = document.createElement("p");
      this.status.className = "status";
      this.status.setAttribute("part", "status");
      this.status.setAttribute("role", "status");
      this.section.append(heading, this.list, this.status);
      root.append(style, this.section);
      this.generation = 0;
      this.loadQueued = false;
    }

    connectedCallback() {
      this.scheduleLoad();
    }

    disconnectedCallback() {
      this.generation++; // an answer arriving after the box left the page is dropped
    }

    attributeChangedCallback() {
      if (this.isConnected) this.scheduleLoad();
    }

    // The loading state at once (the height is reserved from the first layout), the request
    // once per task: a box upgraded after it was parsed (the script tag below it, deferred or
    // async) hears of each attribute and then of its connection, five calls for one request.
    scheduleLoad() {
      this.showLoading();
      if (this.loadQueued) return;
      this.loadQueued = true;
      queueMicrotask(() => {
        this.loadQueued = false;
        if (this.isConnected) this.load();
      });
    }

    showLoading() {
      const limit = this.limit;
      this.style.setProperty("--_rows", String(limit));
      this.section.querySelector("h2").textContent =
        this.getAttribute("heading") || "Related articles";
      this.renderSkeleton(limit);
      this.setState("loading");
    }

    get limit() {
      const value = parseInt(this.getAttribute("limit") || "5", 10);
      return Number.isFinite(value) ? Math.min(Math.max(value, 1), MAX_LIMIT) : 5;
    }

    setState(state, message) {
      // Styles and scripts of the page can follow the box: related-articles[data-state=empty].
      this.dataset.state = state;
      this.section.setAttribute("aria-busy", state === "loading" ? "true" : "false");
      this.status.textContent = message || "";
      this.status.hidden = !message;
      this.dispatchEvent(new CustomEvent("related-articles:" + state, { bubbles: true }));
    }

    async load() {
      const generation = ++this.generation; // a newer load makes this one's answer moot
      const limit = this.limit;
      const ref = (this.getAttribute("ref") || "").trim();
      if (!ref) {
        this.fail("no ref attribute", null);
        return;
      }
      const base = (this.getAttribute("api") || DEFAULT_API).replace(/\/*$/, "/");
      const url = new URL(`v1/articles/${encodeURIComponent(ref)}/related`, base);
      url.searchParams.set("limit", String(limit));
      const minScore = this.getAttribute("min-score");
      if (minScore) url.searchParams.set("min_score", minScore);
      const key = this.getAttribute("key");
      // In the URL, not a header: the request stays a simple GET, without a CORS preflight.
      if (key) url.searchParams.set("key", key);
      let answer;
      for (let attempt = 0; ; attempt++) {
        try {
          const response = await fetch(url, { headers: { accept: "application/json" } });
          const body = await response.json().catch(() => null);
          const error = (body && body.error) || {};
          if (response.status === 409 && error.code === "embedding_pending") {
            if (attempt < PENDING_RETRIES) {
              await new Promise((resolve) => setTimeout(resolve, PENDING_RETRY_MS));
              if (generation !== this.generation) return;
              continue;
            }
          }
          if (!response.ok) {
            throw new Error(`HTTP ${response.status} ${error.code || ""}: ${error.message || ""}`);
          }
          answer = body;
          break;
        } catch (err) {
          if (generation === this.generation) this.fail(err.message, err);
          return;
        }
      }
      if (generation !== this.generation) return;
      const items = (answer && Array.isArray(answer.items) ? answer.items : []).slice(0, limit);
      this.list.replaceChildren(...items.map((item) => this.renderItem(item)));
      if (items.length) this.setState("ready");
      else this.setState("empty", this.getAttribute("empty-text") || "No related articles yet.");
    }

    fail(reason, err) {
      this.list.replaceChildren();
      // The reader gets a sentence; the developer the reason, in the console.
      console.warn(`<related-articles ref="${this.getAttribute("ref")}">: ${reason}`, err || "");
      this.setState("error", "Related articles are not available right now.");
    }

    renderSkeleton(rows) {
      const items = [];
      for (let i = 0; i < rows; i++) {
        const li = document.createElement("li");
        li.setAttribute("aria-hidden", "true");
        const line = document.createElement("span");
        line.className = "skeleton";
        const short = document.createElement("span");
        short.className = "skeleton short";
        li.append(line, short);
        items.push(li);
      }
      this.list.replaceChildren(...items);
    }

    renderItem(item) {
      const li = document.createElement("li");
      li.setAttribute("part", "item");
      let title;
      if (item.url && /^https?:/i.test(item.url)) {
        title = document.createElement("a");
        title.href = item.url;
        title.setAttribute("part", "link");
      } else {
        title = document.createElement("span"); // no page to link to (or not a web one)
        title.className = "title";
      }
      title.textContent = item.title;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.setAttribute("part", "meta");
      const parts = [];
      if (item.source) {
        const source = document.createElement("span");
        source.className = "source";
        source.textContent = item.source;
        parts.push(source, document.createTextNode(" · "));
      }
      const published = new Date(item.published_at);
      if (!Number.isNaN(published.getTime())) {
        const time = document.createElement("time");
        time.dateTime = item.published_at;
        const lang = (this.closest("[lang]") || document.documentElement).lang || undefined;
        time.textContent = new Intl.DateTimeFormat(lang, { dateStyle: "medium" }).format(published);
        parts.push(time);
      } else if (parts.length) {
        parts.pop();
      }
      meta.append(...parts);
      li.append(title, meta);
      return li;
    }
  }

  window.customElements.define("related-articles", RelatedArticles);
})();
