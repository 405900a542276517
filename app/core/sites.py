"""What a site is to every feature: articles belong to one, API keys are bound to some."""

DEFAULT_SITE = "default"
# The sites a caller sees: a set of names, or None for every site (an aggregator's key).
Sites = frozenset[str] | None
