"""Creating, listing, revoking and checking API keys. Flushes; the caller commits.

A token is ``rk_<key id>_<secret>`` (a secret key) or ``pk_<key id>_<secret>`` (a publishable
one, for web pages: the prefix says at a glance which may be published). Only sha256(secret) is
stored, so a leaked database does not leak usable keys, and the token is shown once, when the key
is made.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.auth.models import ApiKey, KeyKind, Scope
from app.auth.repository import ApiKeyRepository
from app.core.sites import DEFAULT_SITE, Sites
from app.db.base import utcnow

TOKEN_PREFIX = "rk_"
PUBLISHABLE_PREFIX = "pk_"
_PREFIXES = {KeyKind.SECRET: TOKEN_PREFIX, KeyKind.PUBLISHABLE: PUBLISHABLE_PREFIX}
_TOKEN = re.compile(r"^(rk|pk)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[KeyKind, str, str] | None:
    """(kind, key id, secret), or None for anything that is not shaped like one of our tokens."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    kind = KeyKind.PUBLISHABLE if match[1] == "pk" else KeyKind.SECRET
    return kind, match[2], match[3]


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` as a browser sends it in the Origin header (lower case, no
    default port, no path), so that a stored origin compares equal to the header; ValueError
    for anything that is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{origin!r} is not an origin: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{origin!r} is not an origin like https://www.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port] only")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key, or an anonymous client (by IP) when anonymous reads are open."""

    key_id: str | None
    scopes: frozenset[str]
    client: str
    # A publishable key's origins; None for secret keys and anonymous callers.
    origins: frozenset[str] | None = None
    # The sites it reads and writes (app.articles.filters); None: every site.
    sites: Sites = frozenset({DEFAULT_SITE})

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    @property
    def publishable(self) -> bool:
        return self.origins is not None

    @property
    def rate_key(self) -> str:
        if self.publishable:
            # Every reader of the site shares the key: one bucket per reader, so that a reader
            # (or a script that copied the key) cannot use up the site's whole allowance.
            return f"pub:{self.key_id}:{self.client}"
        return f"key:{self.key_id}" if self.key_id else f"ip:{self.client}"

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


class ApiKeyService:
    def __init__(self, repository: ApiKeyRepository) -> None:
        self.repository = repository

    async def create(
        self,
        name: str,
        scopes: Iterable[Scope],
        origins: Iterable[str] | None = None,
        sites: Sequence[str] | None = (DEFAULT_SITE,),
    ) -> tuple[ApiKey, str]:
        """The new key and its token (the only time the token exists outside the caller).

        With ``origins``, a publishable key: read only (ValueError for another scope), accepted
        only from those origins (ValueError for one that is not an http(s) origin). ``sites``:
        the sites it reads and writes (None: every site)."""
        if sites is not None:
            sites = sorted({site.strip() for site in sites})
            if not sites or not all(0 < len(site) <= 255 for site in sites):
                raise ValueError("a site is a name of 1 to 255 characters")
        kind = KeyKind.SECRET if origins is None else KeyKind.PUBLISHABLE
        granted = sorted({Scope(s).value for s in scopes})
        allowed: list[str] = []
        if kind is KeyKind.PUBLISHABLE:
            if set(granted) - {Scope.READ.value}:
                raise ValueError("a publishable key can only read")
            granted = [Scope.READ.value]
            allowed = sorted({normalize_origin(o) for o in origins or ()})
            if not allowed:
                raise ValueError("a publishable key needs at least one origin")
        elif not granted:
            raise ValueError("a key needs at least one scope")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            name=name,
            scopes=granted,
            secret_hash=hash_secret(secret),
            created_at=utcnow(),
            kind=kind.value,
            origins=allowed,
            sites=sites,
        )
        self.repository.add(key)
        await self.repository.flush()
        return key, f"{_PREFIXES[kind]}{key_id}_{secret}"

    async def list(self) -> list[ApiKey]:
        return await self.repository.list_all()

    async def revoke(self, key_id: str) -> ApiKey | None:
        key = await self.repository.get(key_id)
        if key is not None and key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.repository.flush()
        return key

    async def authenticate(self, token: str, client: str) -> Principal | None:
        """The key's principal, or None when the token is malformed, unknown, wrong or revoked."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        kind, key_id, secret = parsed
        key = await self.repository.get(key_id)
        # The prefix must match the kind: a secret key relabelled pk_ is not a valid token.
        if key is None or key.revoked_at is not None or key.kind != kind.value:
            return None
        if not hmac.compare_digest(hash_secret(secret), key.secret_hash):
            return None
        origins = frozenset(key.origins) if kind is KeyKind.PUBLISHABLE else None
        return Principal(
            key_id=key.id,
            scopes=frozenset(key.scopes),
            client=client,
            origins=origins,
            sites=None if key.sites is None else frozenset(key.sites),
        )
