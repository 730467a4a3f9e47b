"""The behaviour contract, written once and run against SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from symphony_cli import Status, dispatch, dispatch_batch
from symphony_cli.dedup import KeySource
from symphony_cli.errors import SchemaMissingError


def email(key: str | None, to: str = "ann@example.com", transport: str = "email", **extra) -> dict:
    message = {"type": "EmailMessage", "transport": transport, "payload": {"to": to}, **extra}
    if key is not None:
        message["idempotency_key"] = key
    return message


def statuses(results) -> list[str]:
    return [result.status.value for result in results]


def test_send_then_rerun_returns_same_ids(backend):
    messages = [email(f"k{i}", f"user{i}@example.com") for i in range(5)]
    first = dispatch_batch(messages, settings=backend.settings())
    second = dispatch_batch(messages, settings=backend.settings())
    assert statuses(first) == ["sent"] * 5
    assert statuses(second) == ["duplicate"] * 5
    assert [r.message_id for r in second] == [r.message_id for r in first]
    assert backend.count_messages() == 5


def test_duplicate_inside_one_chunk(backend):
    results = dispatch_batch([email("a"), email("a"), email("b", "bob@example.com")], settings=backend.settings())
    assert statuses(results) == ["sent", "duplicate", "sent"]
    assert results[1].message_id == results[0].message_id
    assert backend.count_messages() == 2


def test_duplicate_across_chunks(backend):
    messages = [email("a"), email("b", "b@x.org"), email("c", "c@x.org"), email("a")]
    results = dispatch_batch(messages, settings=backend.settings(max_batch_size=2))
    assert statuses(results) == ["sent", "sent", "sent", "duplicate"]
    assert results[3].message_id == results[0].message_id


def test_duplicate_with_batch_size_one(backend):
    results = dispatch_batch([email("a"), email("a")], settings=backend.settings(max_batch_size=1))
    assert statuses(results) == ["sent", "duplicate"]
    assert results[1].message_id == results[0].message_id


def test_same_key_other_transport_conflicts(backend):
    results = dispatch_batch([email("a"), email("a", transport="sms")], settings=backend.settings())
    assert sorted(statuses(results)) == ["conflict", "sent"]
    assert backend.count_messages() == 1


def test_keyless_messages_never_deduplicated(backend):
    results = dispatch_batch([email(None), email(None)], settings=backend.settings())
    assert statuses(results) == ["sent", "sent"]
    assert results[0].message_id != results[1].message_id


def test_reject_duplicates_reports_rejected(backend):
    first = dispatch_batch([email("a")], settings=backend.settings())
    again = dispatch_batch([email("a")], settings=backend.settings(reject_duplicates=True))
    assert statuses(again) == ["rejected"]
    assert again[0].message_id == first[0].message_id
    assert "reject_duplicates" in again[0].error


def test_conflict_across_runs(backend):
    first = dispatch_batch([email("a", "ann@example.com")], settings=backend.settings())
    second = dispatch_batch([email("a", "eve@example.com")], settings=backend.settings())
    assert statuses(second) == ["conflict"]
    assert second[0].message_id == first[0].message_id
    assert "different content" in second[0].error


def test_conflict_inside_one_file(backend):
    results = dispatch_batch([email("a", "ann@example.com"), email("a", "eve@example.com")],
                             settings=backend.settings())
    assert statuses(results) == ["sent", "conflict"]
    assert backend.count_messages() == 1


def test_window_expiry_sends_again(backend):
    settings = backend.settings(window_ms=400)
    first = dispatch_batch([email("a")], settings=settings)
    inside = dispatch_batch([email("a")], settings=settings)
    time.sleep(0.6)
    after = dispatch_batch([email("a")], settings=settings)
    assert statuses(inside) == ["duplicate"]
    assert statuses(after) == ["sent"]
    assert after[0].message_id != first[0].message_id


def test_three_imports_record_two_attempts_per_key(backend):
    messages = [email("a"), email("b", "b@x.org")]
    for _ in range(3):
        dispatch_batch(messages, settings=backend.settings())
    rows = backend.query("SELECT idempotency_key, count(*) FROM {attempts} GROUP BY idempotency_key "
                         "ORDER BY idempotency_key")
    assert rows == [("a", 2), ("b", 2)]


def test_track_attempts_off_records_nothing(backend):
    for _ in range(2):
        dispatch_batch([email("a")], settings=backend.settings(track_attempts=False))
    assert backend.query("SELECT count(*) FROM {attempts}")[0][0] == 0


def test_inspect_key_shows_message_and_attempts(backend):
    first = dispatch_batch([email("a")], settings=backend.settings())
    dispatch_batch([email("a"), email("a", "eve@example.com")], settings=backend.settings())
    store = backend.open()
    try:
        info = store.inspect_key("a", limit=10)
        missing = store.inspect_key("nope", limit=10)
    finally:
        store.close()
    assert info.active is True
    assert info.message.id == first[0].message_id
    assert info.message.transport == "email"
    assert [row.outcome for row in info.attempts] == ["conflict", "duplicate"]
    assert info.expires_at > info.created_at
    assert missing is None


def test_list_attempts_filters(backend):
    dispatch_batch([email("a"), email("s", transport="sms")], settings=backend.settings())
    dispatch_batch([email("a"), email("s", transport="sms"), email("a", "eve@x.org")], settings=backend.settings())
    store = backend.open()
    try:
        everything = store.list_attempts(None, None, None, 100)
        sms = store.list_attempts(dt.timedelta(hours=1), "sms", None, 100)
        conflicts = store.list_attempts(None, None, "conflict", 100)
        limited = store.list_attempts(None, None, None, 1)
    finally:
        store.close()
    assert len(everything) == 3
    assert [(row.transport, row.outcome) for row in sms] == [("sms", "duplicate")]
    assert [row.idempotency_key for row in conflicts] == ["a"]
    assert len(limited) == 1


def test_stats_per_transport(backend):
    dispatch_batch([email("a"), email("b", "b@x.org"), email("s", transport="sms")], settings=backend.settings())
    dispatch_batch([email("a"), email("b", "eve@x.org")], settings=backend.settings())
    store = backend.open()
    try:
        rows = {row.transport: row for row in store.stats(dt.timedelta(hours=1))}
    finally:
        store.close()
    assert (rows["email"].sent, rows["email"].duplicates, rows["email"].conflicts) == (2, 1, 1)
    assert rows["email"].duplicate_rate == pytest.approx(1 / 4)
    assert (rows["sms"].sent, rows["sms"].duplicates) == (1, 0)


def test_purge_keeps_active_keys(backend):
    dispatch_batch([email("old")], settings=backend.settings(window_ms=200))
    dispatch_batch([email("new", "b@x.org")], settings=backend.settings())
    dispatch_batch([email("new", "b@x.org")], settings=backend.settings())
    time.sleep(0.4)
    store = backend.open()
    try:
        counts = store.purge(dt.timedelta(days=1))
        kept = store.inspect_key("new", 10)
        gone = store.inspect_key("old", 10)
    finally:
        store.close()
    assert counts.keys == 1
    assert counts.attempts == 0
    assert kept is not None
    assert gone is None


def test_purge_deletes_old_attempts(backend):
    dispatch_batch([email("a")], settings=backend.settings())
    dispatch_batch([email("a")], settings=backend.settings())
    time.sleep(0.05)
    store = backend.open()
    try:
        counts = store.purge(dt.timedelta(milliseconds=1))
    finally:
        store.close()
    assert counts.attempts == 1
    assert counts.keys == 0


def _break_key_table(backend, store) -> None:
    """Rename the keys table under an open store, so the duplicate pre-query fails for real."""
    if backend.kind == "sqlite":
        store.connection.execute(f'ALTER TABLE "{store.tables.keys}" RENAME TO "{store.tables.keys}_gone"')
    else:
        from psycopg import sql
        store.connection.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            store._keys, sql.Identifier(store.tables.keys + "_gone")))


def test_dedup_failure_fails_chunk(backend):
    store = backend.open()
    try:
        _break_key_table(backend, store)
        results = dispatch_batch([email("a"), email("b", "b@x.org"), email(None)],
                                 settings=backend.settings(on_dedup_error="fail"), store=store)
    finally:
        store.close()
    assert statuses(results) == ["failed"] * 3
    assert "duplicate check failed" in results[0].error
    assert backend.count_messages() == 0


def test_dedup_failure_sends_without_check(backend):
    store = backend.open()
    try:
        _break_key_table(backend, store)
        results = dispatch_batch([email("a"), email("b", "b@x.org")],
                                 settings=backend.settings(on_dedup_error="send"), store=store)
    finally:
        store.close()
    assert statuses(results) == ["sent", "sent"]
    assert "without deduplication" in results[0].error
    assert backend.count_messages() == 2


def test_dry_run_writes_nothing(backend):
    dispatch_batch([email("old")], settings=backend.settings())
    messages = [email("old"), email("new", "b@x.org"), email("old", "eve@x.org"), {"type": "", "payload": {}},
                email("new", "b@x.org")]
    results = dispatch_batch(messages, settings=backend.settings(max_batch_size=2), dry_run=True)
    assert statuses(results) == ["duplicate", "would-send", "conflict", "invalid", "duplicate"]
    assert backend.count_messages() == 1
    assert backend.query("SELECT count(*) FROM {attempts}")[0][0] == 0


def test_chunk_of_20000_messages(backend):
    messages = [email(f"k{i}", f"u{i}@example.com") for i in range(20_000)]
    store = backend.open()
    calls = {"find_existing_keys": 0, "insert_messages": 0}
    for name in calls:
        original = getattr(store, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(store, name, counted)
    try:
        results = dispatch_batch(messages, settings=backend.settings(max_batch_size=20_000), store=store)
    finally:
        store.close()
    assert statuses(results).count("sent") == 20_000
    assert calls == {"find_existing_keys": 1, "insert_messages": 1}
    assert backend.count_messages() == 20_000


def test_one_by_one_matches_batch(backend):
    messages = [email("a"), email("a"), email("b", "b@x.org"), {"type": "X"}]
    results = dispatch_batch(messages, settings=backend.settings(use_batch_insert=False))
    assert statuses(results) == ["sent", "duplicate", "sent", "invalid"]


@pytest.mark.parametrize("payload, field", [
    ({"body": "x\x00y"}, "payload.body"),
    ({"v": float("nan")}, "payload.v"),
    ({"v": float("inf")}, "payload.v"),
    ({"s": "\ud800"}, "payload.s"),
    ({"deep": [{"s": "ok"}, {"s": "\x00"}]}, "payload.deep[1].s"),
])
def test_rejected_values_fail_only_their_message(backend, payload, field):
    messages = [email("a"), {"type": "A", "payload": payload, "idempotency_key": "bad"}, email("c", "c@x.org")]
    results = dispatch_batch(messages, settings=backend.settings())
    assert statuses(results) == ["sent", "invalid", "sent"]
    assert results[1].error.startswith(field)


def test_injection_shaped_table_name(backend):
    odd = 'x"; drop table y; --'
    table = odd if backend.kind == "sqlite" else backend.table.split(".")[0] + "." + odd
    results = dispatch_batch([email("a")], settings=backend.settings(table=table))
    again = dispatch_batch([email("a")], settings=backend.settings(table=table))
    assert statuses(results) == ["sent"]
    assert statuses(again) == ["duplicate"]


def test_missing_schema_without_auto_create(backend):
    with pytest.raises(SchemaMissingError, match="symphony db init"):
        backend.open(auto_create=False)


def test_key_field_source(backend):
    messages = [{"type": "A", "payload": {"order": {"id": 7}}}, {"type": "A", "payload": {"order": {"id": 7}}},
                {"type": "A", "payload": {}}]
    results = dispatch_batch(messages, settings=backend.settings(), key_source=KeySource(field="payload.order.id"))
    assert statuses(results) == ["sent", "duplicate", "invalid"]
    assert results[0].idempotency_key == "7"
    assert "payload.order.id is missing" in results[2].error


def test_key_template_source(backend):
    messages = [{"type": "A", "payload": {"order_id": "o1"}}, {"type": "B", "payload": {"order_id": "o1"}},
                {"type": "A", "payload": {}}]
    results = dispatch_batch(messages, settings=backend.settings(),
                             key_source=KeySource(template="{type}:{payload.order_id}"))
    assert statuses(results) == ["sent", "sent", "invalid"]
    assert [r.idempotency_key for r in results[:2]] == ["A:o1", "B:o1"]


def test_key_from_content_source(backend):
    messages = [{"type": "A", "payload": {"x": 1, "y": 2}}, {"type": "A", "payload": {"y": 2, "x": 1}},
                {"type": "A", "payload": {"x": 2}}]
    results = dispatch_batch(messages, settings=backend.settings(), key_source=KeySource(from_content=True))
    assert statuses(results) == ["sent", "duplicate", "sent"]
    assert results[0].idempotency_key.startswith("sha256:")


def test_message_key_overrides_nothing_by_default(backend):
    results = dispatch_batch([email("a"), {**email(None), "idempotencyKey": "a"}], settings=backend.settings())
    assert statuses(results) == ["sent", "duplicate"]


def test_dispatch_single_message(backend):
    first = dispatch(email(None), idempotency_key="single", settings=backend.settings())
    again = dispatch(email(None), idempotency_key="single", settings=backend.settings())
    assert first.status is Status.SENT
    assert again.status is Status.DUPLICATE
    assert again.message_id == first.message_id
