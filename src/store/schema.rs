//! Schema versions. `PRAGMA user_version` holds the version; each migration moves one version up
//! inside one transaction, so a crash mid-migration leaves the previous version intact.

/// The version this binary writes.
pub const CURRENT: u32 = 4;

/// Version 1: the first schema (probe results, transitions, incidents, actions).
const V1: &str = "
CREATE TABLE probe_results (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    started_at  INTEGER NOT NULL
);
CREATE INDEX probe_results_at ON probe_results(at);
CREATE INDEX probe_results_name_at ON probe_results(name, at);
CREATE TABLE transitions (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    incident   INTEGER
);
CREATE INDEX transitions_at ON transitions(at);
CREATE INDEX transitions_incident ON transitions(incident);
CREATE TABLE incidents (
    id           INTEGER PRIMARY KEY,
    opened_at    INTEGER NOT NULL,
    closed_at    INTEGER,
    probes       TEXT NOT NULL,
    close_reason TEXT,
    paged_at     INTEGER,
    acked_at     INTEGER
);
CREATE TABLE actions (
    id         INTEGER PRIMARY KEY,
    incident   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    tier       TEXT,
    detail     TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    outcome    TEXT,
    output     TEXT
);
CREATE INDEX actions_incident ON actions(incident);
";

/// Version 2: re-probe flag on results, verdicts on actions, notifications, the core's state.
const V1_TO_V2: &str = "
ALTER TABLE probe_results ADD COLUMN reprobe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN verdict TEXT;
ALTER TABLE actions ADD COLUMN verdict_at INTEGER;
CREATE TABLE notifications (
    id             INTEGER PRIMARY KEY,
    incident       INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    text           TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    delivered_at   INTEGER,
    dropped_at     INTEGER,
    dropped_reason TEXT,
    channels       TEXT
);
CREATE INDEX notifications_incident ON notifications(incident);
CREATE TABLE core_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    at      INTEGER NOT NULL,
    state   TEXT NOT NULL,
    batches INTEGER NOT NULL,
    json    TEXT NOT NULL
);
";

/// Version 3: a failing result's detail beside its one-line output (empty for the results
/// stored before: they had none).
const V2_TO_V3: &str = "
ALTER TABLE probe_results ADD COLUMN detail TEXT NOT NULL DEFAULT '';
";

/// Version 4: a small key-value table for the runtime's own durable bits that are not the core's
/// state (a chat channel's update offset, when a digest last went out, a push check's last ping,
/// a worker stopped on purpose, …). Keys are namespaced `"<room>.<what>"`; values are JSON text.
const V3_TO_V4: &str = "
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at    INTEGER NOT NULL
);
";

/// `MIGRATIONS[v]` moves version `v` to `v + 1` (version 0 = empty database).
pub const MIGRATIONS: &[&str] = &[V1, V1_TO_V2, V2_TO_V3, V3_TO_V4];
