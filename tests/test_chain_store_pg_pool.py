"""PostgresStore's connection pool survives the database dropping its connections (a restart,
a failover, an idle-connection reaper): calls fail fast and clearly while the database is
unreachable and succeed again as soon as it is back — never a 30 s wait on an exhausted pool."""
from __future__ import annotations

import threading

import pytest

from chain_service import pg


def _call_within(fn, seconds: float):
    """fn() in a thread; its result, or its exception re-raised; fails the test if it takes
    longer than `seconds` (the old pool blocked 30 s per call once its connections had died,
    then failed)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"store call still blocked after {seconds:g} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _gets_succeed(store, job_id: str, times: int) -> None:
    """`times` store calls in a row, each answered correctly within 10 s."""
    for _ in range(times):
        assert _call_within(lambda: store.get_job(job_id), 10).id == job_id


def _dbname(url: str) -> str:
    psycopg = pytest.importorskip("psycopg")
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


def _admin(url: str):
    psycopg = pytest.importorskip("psycopg")
    return psycopg.connect(pg.server().get_uri(), autocommit=True)


def _kill_backends(admin, db: str) -> int:
    rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (db,)).fetchall()
    return len(rows)


def _open_full_pool(url: str, size: int = 4):
    from compound.service.store.postgres import PostgresStore
    store = PostgresStore(url, pool_size=size)
    # Fill the pool: `size` connections checked out at once, then returned idle.
    barrier = threading.Barrier(size)

    def hold():
        with store._tx() as cur:
            cur.execute("SELECT 1")
            barrier.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return store


def test_pool_recovers_after_all_its_connections_are_killed():
    url = pg.fresh_database_url()
    db = _dbname(url)
    store = _open_full_pool(url)
    try:
        job, _ = store.create_job("extract", {})
        with _admin(url) as admin:
            assert _kill_backends(admin, db) >= 4  # every pooled connection is dead now
        # More calls than the pool has connections: each must succeed, promptly.
        _gets_succeed(store, job.id, 10)
        # Concurrent use after the outage works too (the pool refilled with live connections).
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(store.list_jobs())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert len(results) == 8 and all(r[0].id == job.id for r in results)
    finally:
        store.close()


def test_outage_fails_fast_and_the_pool_recovers_when_the_database_is_back():
    psycopg = pytest.importorskip("psycopg")
    url = pg.fresh_database_url()
    db = _dbname(url)
    store = _open_full_pool(url)
    try:
        job, _ = store.create_job("extract", {})
        with _admin(url) as admin:
            # "Outage": no new connections to this database, and the existing ones are cut.
            admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            _kill_backends(admin, db)
            try:
                for _ in range(6):  # more than the pool size: no call may hang on the pool
                    with pytest.raises(psycopg.OperationalError):
                        _call_within(lambda: store.get_job(job.id), 10)
            finally:
                admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        _gets_succeed(store, job.id, 6)
        assert store.claim_job("w1", lease_s=30).id == job.id
    finally:
        store.close()


def test_connections_use_tcp_keepalives_so_a_vanished_server_is_noticed():
    # A host that disappears mid-query sends no FIN; keepalives (and tcp_user_timeout) make the
    # call fail in ~30 s instead of the kernel's ~2 h. What the server sees of our sockets is
    # not observable here, so the check is on the connection parameters libpq was given.
    from compound.service.store.postgres import PostgresStore

    store = PostgresStore(pg.fresh_database_url(), pool_size=1)
    try:
        with store._tx() as cur:
            cur.execute("SELECT 1")
            params = cur._cur.connection.info.get_parameters()  # the psycopg cursor under the shim
        assert params["keepalives"] == "1" and params["keepalives_idle"] == "10"
        assert params["tcp_user_timeout"] == "30000"
    finally:
        store.close()
