"""Keys and the audit trail on a real PostgreSQL server: migration 0003, hashing, concurrent appends keep one chain."""

from __future__ import annotations

import threading

from radclip.engine import db
from radclip.engine.audit import AuditEntry, AuditTrail, utc_stamp
from radclip.engine.keys import KeyStore


def test_keys_and_a_concurrently_appended_trail_on_postgres(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    db.migrate(engine)
    store = KeyStore(engine)
    key = store.create("pacs", "ingest", expires_days=1)
    assert store.verify(key).role == "ingest" and store.verify(key + "x") is None
    assert store.revoke("pacs") and store.verify(key) is None

    # Two processes' worth of writers (separate engines and locks) race on one chain head.
    trails = [AuditTrail(db.make_engine(pg_url)) for _ in range(2)]
    barrier = threading.Barrier(2)

    def write(trail: AuditTrail, who: str) -> None:
        barrier.wait()
        for i in range(15):
            trail.append(AuditEntry(utc_stamp(), who, "reader", "10.0.0.9", "screen", f"study-{i:02d}", 200))

    threads = [threading.Thread(target=write, args=(t, f"w{n}")) for n, t in enumerate(trails)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    result = AuditTrail(engine).verify()
    assert result.ok and result.entries == 30, result
    for t in trails:
        t.engine.dispose()
    engine.dispose()
