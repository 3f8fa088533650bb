"""The ClickHouse schema of `ClickHouseStore`, as the list of migrations that build it.

`ClickHouseStore` creates the database and runs, on start, every migration past the
newest one recorded in ``schema_migrations``. The tables and what each holds are
described in `kato_grpc.kb.clickhouse`'s docstring; docs/clickhouse.md tells operators
how to migrate by hand.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_KINDS = "Enum8('pattern' = 1, 'vector' = 2, 'applied' = 3, 'clear' = 4, 'notice' = 5)"
_OPS = "Enum8('none' = 0, 'learn' = 1, 'put' = 2, 'update' = 3, 'delete' = 4)"

# Migration i (1-based) takes the schema from version i-1 to i. Append only; never edit.
# ClickHouse DDL is not transactional, so every statement must be idempotent (IF NOT
# EXISTS): a migration interrupted half-way, or run by two replicas at once, is re-run.
# {db} is the database of the URL. Views run in name order on an INSERT: data first, the
# change log last, so a reader who sees a version finds its rows.
MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "knowledge bases: kb_writes fanned out to patterns, vectors, applied, kb_clears, kb_changes",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.kb_writes (
            kb_id String,
            kind {_KINDS},
            key String,
            version UInt64,
            deleted UInt8,
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String,
            vector Array(Float64),
            session_version UInt64,
            announces UInt64
        ) ENGINE = Null""",
            """CREATE TABLE IF NOT EXISTS {db}.patterns (
            kb_id String,
            name String,
            version UInt64,
            deleted UInt8,
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (kb_id, name)""",
            """CREATE TABLE IF NOT EXISTS {db}.vectors (
            kb_id String,
            name String,
            version UInt64,
            vector Array(Float64)
        ) ENGINE = ReplacingMergeTree(version) ORDER BY (kb_id, name)""",
            """CREATE TABLE IF NOT EXISTS {db}.applied (
            kb_id String,
            session_id String,
            session_version UInt64,
            version UInt64
        ) ENGINE = ReplacingMergeTree(session_version) ORDER BY (kb_id, session_id)""",
            """CREATE TABLE IF NOT EXISTS {db}.kb_clears (
            kb_id String,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY kb_id""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.kb_changes (
            kb_id String,
            version UInt64,
            kind {_KINDS},
            key String,
            announces UInt64
        ) ENGINE = MergeTree ORDER BY (kb_id, version)""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_1_patterns TO {db}.patterns AS
            SELECT kb_id, key AS name, version, deleted, events, frequency, emotives, metadata, affinity_contrib
            FROM {db}.kb_writes WHERE kind = 'pattern'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_2_vectors TO {db}.vectors AS
            SELECT kb_id, key AS name, version, vector FROM {db}.kb_writes WHERE kind = 'vector'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_3_applied TO {db}.applied AS
            SELECT kb_id, key AS session_id, session_version, version FROM {db}.kb_writes WHERE kind = 'applied'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_4_clears TO {db}.kb_clears AS
            SELECT kb_id, version FROM {db}.kb_writes WHERE kind = 'clear'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_8_changes TO {db}.kb_changes AS
            SELECT kb_id, version, kind, key, announces FROM {db}.kb_writes WHERE kind != 'applied'""",
        ],
    ),
    (
        "pattern operations (exact counts under contention), hourly partitioned change log with floors",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.pattern_ops (
            kb_id String,
            name String,
            version UInt64,
            seq UInt32,
            op {_OPS},
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String,
            persistence UInt32
        ) ENGINE = MergeTree ORDER BY (kb_id, name, version, seq)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.kb_log (
            kb_id String,
            version UInt64,
            seq UInt32,
            kind {_KINDS},
            key String,
            announces UInt64,
            op {_OPS},
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String,
            persistence UInt32,
            vector Array(Float64),
            hour UInt32
        ) ENGINE = MergeTree PARTITION BY hour ORDER BY (kb_id, version, seq)""",
            """CREATE TABLE IF NOT EXISTS {db}.kb_log_floor (
            kb_id String,
            floor UInt64
        ) ENGINE = ReplacingMergeTree(floor) ORDER BY kb_id""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.kb_writes_v2 (
            kb_id String,
            kind {_KINDS},
            key String,
            version UInt64,
            seq UInt32,
            op {_OPS},
            events String,
            frequency UInt64,
            emotives String,
            metadata String,
            affinity_contrib String,
            persistence UInt32,
            vector Array(Float64),
            session_version UInt64,
            announces UInt64
        ) ENGINE = Null""",
            # The version-1 write path stops here: its record rows become `put` operations below.
            "DROP TABLE IF EXISTS {db}.kb_writes_1_patterns",
            "DROP TABLE IF EXISTS {db}.kb_writes_2_vectors",
            "DROP TABLE IF EXISTS {db}.kb_writes_3_applied",
            "DROP TABLE IF EXISTS {db}.kb_writes_4_clears",
            "DROP TABLE IF EXISTS {db}.kb_writes_8_changes",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_v2_1_ops TO {db}.pattern_ops AS
            SELECT kb_id, key AS name, version, seq, op, events, frequency, emotives, metadata, affinity_contrib,
                   persistence
            FROM {db}.kb_writes_v2 WHERE kind = 'pattern'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_v2_2_vectors TO {db}.vectors AS
            SELECT kb_id, key AS name, version, vector FROM {db}.kb_writes_v2 WHERE kind = 'vector'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_v2_3_applied TO {db}.applied AS
            SELECT kb_id, key AS session_id, session_version, version FROM {db}.kb_writes_v2 WHERE kind = 'applied'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_v2_4_clears TO {db}.kb_clears AS
            SELECT kb_id, version FROM {db}.kb_writes_v2 WHERE kind = 'clear'""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kb_writes_v2_8_log TO {db}.kb_log AS
            SELECT kb_id, version, seq, kind, key, announces, op, events, frequency, emotives, metadata,
                   affinity_contrib, persistence, vector, intDiv(toUInt32(now()), 3600) AS hour
            FROM {db}.kb_writes_v2 WHERE kind != 'applied'""",
            # Version-1 records as `put` operations (tombstones as `delete`). Re-running this
            # after an interruption duplicates rows, which folds to the same records.
            f"""INSERT INTO {{db}}.pattern_ops
            SELECT kb_id, name, version, 0, CAST(if(deleted = 1, 'delete', 'put') AS {_OPS}),
                   events, frequency, emotives, metadata, affinity_contrib, 0
            FROM {{db}}.patterns""",
            # Carry each KB's head over, so new versions sort after the migrated ones.
            """INSERT INTO {db}.kb_log (kb_id, version, kind, hour)
            SELECT kb_id, max(version), 'notice', intDiv(toUInt32(now()), 3600)
            FROM {db}.kb_changes GROUP BY kb_id""",
        ],
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
