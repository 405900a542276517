"""What text of an article is embedded, and why.

all-MiniLM-L6-v2 reads at most 256 word pieces (about 1,000 to 1,300 characters of English news)
and silently drops the rest, so the window has to hold the words that say what the story is:

* the headline first: it names the event and is the densest signal (on headline-only corpora it
  is all there is);
* then the summary, when the publisher wrote one that is not just the opening of the body;
* then the lead of the body: news is written as an inverted pyramid, so the first paragraphs
  carry who, what, where and when, and later paragraphs add background that would pull the
  vector towards other stories.

The text is cut at MAX_CHARS before tokenizing so a 25,000-character feature does not cost
25,000 characters of tokenizer time for 256 pieces the model keeps.
"""

import hashlib

# Comfortably more than 256 word pieces of English; the model truncates exactly.
MAX_CHARS = 2000


def _normalise(text: str | None) -> str:
    return " ".join((text or "").split())


def embedding_text(title: str, summary: str | None, body: str | None) -> str:
    title, summary, body = _normalise(title), _normalise(summary), _normalise(body)
    parts = [title]
    # Feeds often fill the summary with the body's first sentences ("...", truncated).
    summary_core = summary.rstrip(". …")
    if summary_core and not body.startswith(summary_core[:200]):
        parts.append(summary)
    parts.append(body)
    return "\n".join(p for p in parts if p)[:MAX_CHARS]


def embedding_hash(model_name: str, text: str) -> str:
    """Identifies a vector: the same text under the same model never needs encoding again."""
    return hashlib.sha256(f"{model_name}\n{text}".encode()).hexdigest()
