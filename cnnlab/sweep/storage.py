"""Where a sweep's study lives: an SQLAlchemy URL (the sweep folder's SQLite file, or a shared
PostgreSQL server) opened as an Optuna storage whose running trials must send heartbeats.
Database errors become one line, and URLs are shown without their password."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from cnnlab.errors import ConfigError


def open_storage(url: str, heartbeat_seconds: int) -> Any:
    """An optuna RDBStorage whose running trials must beat every `heartbeat_seconds`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats are experimental in Optuna, and it expects them from study.optimize; cnnlab
    # asks and tells itself (to start exactly the trials asked for) and beats on its own.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    with database_errors(url):
        return optuna.storages.RDBStorage(
            with_driver(url), heartbeat_interval=heartbeat_seconds,
            grace_period=3 * heartbeat_seconds, engine_kwargs={"pool_pre_ping": True})


def with_driver(url: str) -> str:
    """`url` naming the PostgreSQL driver cnnlab installs (psycopg 3) when it names none:
    SQLAlchemy's default for a bare postgresql:// is psycopg2 before 2.1 and psycopg after."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme in ("postgresql", "postgres") else url


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open the sweep's database {shown(url)}: {first}") from None


def shown(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{host}"
    return url
