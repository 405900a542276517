"""Creating, listing, revoking and checking API keys. Flushes; the caller commits.

A token is ``rk_<key id>_<secret>``. Only sha256(secret) is stored, so a leaked database does
not leak usable keys, and the token is shown once, when the key is made.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from app.articles.models import utcnow
from app.auth.models import ApiKey, Scope
from app.auth.repository import ApiKeyRepository

TOKEN_PREFIX = "rk_"
_TOKEN = re.compile(r"^rk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret), or None for anything that is not shaped like one of our tokens."""
    match = _TOKEN.match(token)
    return (match[1], match[2]) if match else None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key, or an anonymous client (by IP) when anonymous reads are open."""

    key_id: str | None
    scopes: frozenset[str]
    client: str

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    @property
    def rate_key(self) -> str:
        return f"key:{self.key_id}" if self.key_id else f"ip:{self.client}"

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


class ApiKeyService:
    def __init__(self, repository: ApiKeyRepository) -> None:
        self.repository = repository

    async def create(self, name: str, scopes: Iterable[Scope]) -> tuple[ApiKey, str]:
        """The new key and its token (the only time the token exists outside the caller)."""
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            name=name,
            scopes=sorted({Scope(s).value for s in scopes}),
            secret_hash=hash_secret(secret),
            created_at=utcnow(),
        )
        self.repository.add(key)
        await self.repository.flush()
        return key, f"{TOKEN_PREFIX}{key_id}_{secret}"

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
        key_id, secret = parsed
        key = await self.repository.get(key_id)
        if key is None or key.revoked_at is not None:
            return None
        if not hmac.compare_digest(hash_secret(secret), key.secret_hash):
            return None
        return Principal(key_id=key.id, scopes=frozenset(key.scopes), client=client)
