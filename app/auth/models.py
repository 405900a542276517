from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"  # everything


class KeyKind(StrEnum):
    SECRET = "secret"  # kept on servers: any scopes
    # Put in web pages: read only, accepted only from its origins, limited per visitor.
    PUBLISHABLE = "publishable"


class ApiKey(Base):
    __tablename__ = "api_keys"

    # Public: the token carries it so the key is found by primary key, not by scanning hashes.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    # sha256 of the secret part: the token has 256 random bits, so a fast hash is enough (a
    # password hash's slowness protects guessable secrets, which these are not).
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    revoked_at: Mapped[datetime | None]
    kind: Mapped[str] = mapped_column(
        String(16), default=KeyKind.SECRET.value, server_default=KeyKind.SECRET.value
    )
    # The browser origins (scheme://host[:port]) a publishable key is accepted from.
    origins: Mapped[list[str]] = mapped_column(
        ARRAY(String(255)), default=list, server_default="{}"
    )
    # The sites the key reads and writes; NULL: every site (an aggregator). A key made without
    # naming any, by this release or the one before (migration 0015), is bound to `default`.
    sites: Mapped[list[str] | None] = mapped_column(
        # evaluates_none: a key made with sites=None stores NULL, not the server default.
        ARRAY(String(255)).evaluates_none(),
        server_default="{default}",
    )
