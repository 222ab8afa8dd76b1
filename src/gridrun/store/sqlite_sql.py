"""All SQL of the SQLite store, by name: the schema and its migrations, then the queries."""

SCHEMA_V1 = """
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    name             TEXT,
    spec             TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    selector         TEXT NOT NULL,
    legacy_ok        INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    assigned_at      INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    exit_code        INTEGER,
    signal           INTEGER,
    error            TEXT
);
CREATE INDEX tasks_queue ON tasks (priority DESC, seq) WHERE state = 'queued';
CREATE INDEX tasks_active ON tasks (worker_id) WHERE state IN ('assigned', 'running');
CREATE INDEX tasks_by_state ON tasks (state, seq);
CREATE INDEX tasks_by_worker ON tasks (worker_id, seq);
CREATE INDEX tasks_by_name ON tasks (name, seq);

CREATE TABLE output (
    task_id TEXT NOT NULL,
    stream  INTEGER NOT NULL,
    data    BLOB NOT NULL,
    total   INTEGER NOT NULL,
    PRIMARY KEY (task_id, stream)
) WITHOUT ROWID;

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    labels       TEXT NOT NULL,
    slots        INTEGER NOT NULL,
    state        TEXT NOT NULL,
    version      TEXT NOT NULL,
    legacy       INTEGER NOT NULL,
    connected_at INTEGER,
    last_seen    INTEGER
);
"""

# v2: retries (attempt history, not_before), queue timeouts, idempotency keys
SCHEMA_V2 = """
ALTER TABLE tasks ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN expires_at INTEGER;
ALTER TABLE tasks ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX tasks_by_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE state = 'queued' AND expires_at IS NOT NULL;
CREATE TABLE attempts (
    task_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    assigned_at INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    exit_code   INTEGER,
    signal      INTEGER,
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;
"""

# v3: what each worker has (cpus, memory_mb, gpus), as its Hello says
SCHEMA_V3 = """
ALTER TABLE workers ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
"""

MIGRATIONS = [
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
]  # MIGRATIONS[n] brings a database from version n to n+1
SCHEMA_VERSION = len(MIGRATIONS)

TASK_COLUMNS = (
    "seq, id, spec, state, attempt, worker_id, cancel_requested, created_at, assigned_at,"
    " started_at, finished_at, exit_code, signal, error, not_before"
)
SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
INSERT_TASK = (
    "INSERT INTO tasks (id, name, spec, priority, selector, legacy_ok, state, created_at,"
    " expires_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)"
)
SELECT_TASK_BY_KEY = f"SELECT {TASK_COLUMNS} FROM tasks WHERE idempotency_key = ?"
SELECT_QUEUED = (
    "SELECT id, priority, seq, selector, legacy_ok FROM tasks WHERE state = 'queued'"
    " AND not_before <= ? {after} ORDER BY priority DESC, seq LIMIT ?"
)
QUEUED_AFTER = "AND (priority < ? OR (priority = ? AND seq > ?))"
CLAIM = (
    "UPDATE tasks SET state = ?, attempt = attempt + 1, worker_id = ?, assigned_at = ?,"
    " started_at = NULL, finished_at = NULL, exit_code = NULL, signal = NULL, error = NULL"
    " WHERE id = ?"
)
START = "UPDATE tasks SET state = ?, started_at = ? WHERE id = ?"
FINISH = (
    "UPDATE tasks SET state = ?, started_at = coalesce(?, started_at), finished_at = ?,"
    " exit_code = ?, signal = ?, error = ? WHERE id = ?"
)
REQUEUE = (
    "UPDATE tasks SET state = ?, worker_id = NULL, assigned_at = NULL, started_at = NULL,"
    " not_before = ?, error = ? WHERE id = ?"
)
SELECT_EXPIRED = (
    "SELECT id FROM tasks WHERE state = 'queued' AND expires_at IS NOT NULL AND expires_at <= ?"
    " ORDER BY expires_at LIMIT ?"
)
INSERT_ATTEMPT = (
    "INSERT INTO attempts (task_id, attempt, worker_id, state, assigned_at) VALUES (?, ?, ?, ?, ?)"
)
START_ATTEMPT = "UPDATE attempts SET state = ?, started_at = ? WHERE task_id = ? AND attempt = ?"
END_ATTEMPT = (
    "UPDATE attempts SET state = ?, started_at = coalesce(?, started_at), finished_at = ?,"
    " exit_code = ?, signal = ?, error = ? WHERE task_id = ? AND attempt = ?"
)
COUNT_TRIES = (
    "SELECT count(*) FROM attempts WHERE task_id = ? AND state != 'queued' AND attempt < ?"
)
SELECT_ATTEMPTS = (
    "SELECT task_id, attempt, worker_id, state, assigned_at, started_at, finished_at, exit_code,"
    " signal, error FROM attempts WHERE task_id = ? ORDER BY attempt"
)
SELECT_DUE = (
    "SELECT 1 FROM tasks WHERE state = 'queued' AND not_before > 0 AND not_before <= ? LIMIT 1"
)
END = "UPDATE tasks SET state = ?, finished_at = ?, error = ? WHERE id = ?"
FLAG_CANCEL = "UPDATE tasks SET cancel_requested = 1 WHERE id = ?"
SELECT_ACTIVE = (
    f"SELECT {TASK_COLUMNS} FROM tasks"
    " WHERE worker_id = ? AND state IN ('assigned', 'running') ORDER BY seq"
)
SELECT_ACTIVE_WORKERS = (
    "SELECT DISTINCT worker_id FROM tasks WHERE state IN ('assigned', 'running')"
)
SELECT_OUTPUT = "SELECT stream, data, total FROM output WHERE task_id = ?"
UPSERT_OUTPUT = (
    "INSERT INTO output (task_id, stream, data, total) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (task_id, stream) DO UPDATE SET data = excluded.data, total = excluded.total"
)
DELETE_OUTPUT = "DELETE FROM output WHERE task_id = ?"
UPSERT_WORKER = (
    "INSERT INTO workers (id, hostname, labels, slots, state, version, legacy, connected_at,"
    " last_seen, resources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, labels = excluded.labels,"
    " slots = excluded.slots, state = excluded.state, version = excluded.version,"
    " legacy = excluded.legacy, connected_at = excluded.connected_at,"
    " last_seen = excluded.last_seen, resources = excluded.resources"
)
SELECT_WORKERS = (
    "SELECT w.id, w.hostname, w.labels, w.slots, w.state, w.version, w.legacy, w.connected_at,"
    " w.last_seen, (SELECT count(*) FROM tasks t WHERE t.worker_id = w.id"
    " AND t.state IN ('assigned', 'running')), w.resources FROM workers w ORDER BY w.id"
)
COUNT_BY_STATE = "SELECT state, count(*) FROM tasks GROUP BY state"
