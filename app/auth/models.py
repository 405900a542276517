from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.articles.models import utcnow
from app.db.base import Base


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"  # everything


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
