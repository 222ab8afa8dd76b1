"""The SQLite schema and its migrations. The queries, shared with PostgreSQL, are in `queries`."""

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

# v4: worker leases, so that any master can judge whether a worker is alive
SCHEMA_V4 = """
ALTER TABLE workers ADD COLUMN master TEXT;
ALTER TABLE workers ADD COLUMN lease_until INTEGER;
"""

# v5: placement beyond labels (selector terms, resources), and why a task cannot be placed
SCHEMA_V5 = """
ALTER TABLE tasks ADD COLUMN placement TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN unschedulable TEXT;
"""

# v6: tasks that run after others
SCHEMA_V6 = """
CREATE TABLE deps (
    task_id  TEXT NOT NULL,
    after_id TEXT NOT NULL,
    PRIMARY KEY (task_id, after_id)
) WITHOUT ROWID;
CREATE INDEX deps_by_after ON deps (after_id);
"""

# v7: broadcast jobs (one task per worker, found by the job's id)
SCHEMA_V7 = """
ALTER TABLE tasks ADD COLUMN job_id TEXT;
CREATE INDEX tasks_by_job ON tasks (job_id, seq) WHERE job_id IS NOT NULL;
"""

# v8: tasks made on a cron schedule, once per slot
SCHEMA_V8 = """
CREATE TABLE schedules (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    cron       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_at    BIGINT NOT NULL,
    last_fired BIGINT,
    last_task  TEXT
);
CREATE INDEX schedules_due ON schedules (next_at);
"""

# v9: finding a retry whose backoff is over must not read the whole queue
SCHEMA_V9 = """
CREATE INDEX tasks_retry ON tasks (not_before) WHERE state = 'queued' AND not_before > 0;
"""

# v10: tasks per state, kept as they change, so counting (GET /v1/stats, the dashboard each
# second, /metrics) does not read every task ever run: 70 ms at 1M tasks, on the one thread
# that also dispatches. Changes of state are counted by a trigger; inserts, by the insert itself
# (a trigger on INSERT made batched inserts 2.5x slower). Every state has its row (added when
# the store opens), so the trigger needs no upsert.
SCHEMA_V10 = """
CREATE TABLE task_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO task_counts (state, n) SELECT state, count(*) FROM tasks GROUP BY state;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
    WHEN old.state IS NOT new.state BEGIN
    UPDATE task_counts SET n = n - 1 WHERE state = old.state;
    UPDATE task_counts SET n = n + 1 WHERE state = new.state;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE state = old.state;
END;
"""
COUNT_STATE = "INSERT OR IGNORE INTO task_counts (state, n) VALUES (?, 0)"
# a write that changes nothing but still writes a page (SQLite skips an update to the same
# value): does the database take writes again?
PROBE_WRITE = (
    "UPDATE task_counts SET n = n + 1 WHERE state = 'queued'",
    "UPDATE task_counts SET n = n - 1 WHERE state = 'queued'",
)
COUNT_INSERTED = "UPDATE task_counts SET n = n + ? WHERE state = 'queued'"

# v11: workers are distrusted. Each worker id is bound to the secret of the process that first
# joined with it (its hash; see Trust.bind_identity). And reports stored before they were
# checked at the edge are repaired so every record reads back: times outside what a date can
# hold are dropped, NULs taken out of errors.
SCHEMA_V11 = """
CREATE TABLE worker_secrets (
    worker_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    bound_at    INTEGER NOT NULL
) WITHOUT ROWID;
UPDATE tasks SET started_at = NULL WHERE started_at NOT BETWEEN 0 AND 253402300799999;
UPDATE tasks SET finished_at = NULL WHERE finished_at NOT BETWEEN 0 AND 253402300799999;
UPDATE attempts SET started_at = NULL WHERE started_at NOT BETWEEN 0 AND 253402300799999;
UPDATE attempts SET finished_at = NULL WHERE finished_at NOT BETWEEN 0 AND 253402300799999;
UPDATE tasks SET error = replace(error, char(0), '') WHERE instr(error, char(0)) > 0;
UPDATE attempts SET error = replace(error, char(0), '') WHERE instr(error, char(0)) > 0;
"""

# v12: one name per concept: the labels a task requires are `labels` everywhere (the spec, the
# API, the scheduler), so their column is too (it was `selector`, which is the name of the
# terms beyond them)
SCHEMA_V12 = "ALTER TABLE tasks RENAME COLUMN selector TO labels;"

# v13: containment. What each attempt used (measured by its worker's cgroup; NULL where not
# measured), and how each worker contains its tasks.
SCHEMA_V13 = """
ALTER TABLE attempts ADD COLUMN cpu_s REAL;
ALTER TABLE attempts ADD COLUMN peak_memory_bytes INTEGER;
ALTER TABLE attempts ADD COLUMN io_read_bytes INTEGER;
ALTER TABLE attempts ADD COLUMN io_write_bytes INTEGER;
ALTER TABLE workers ADD COLUMN containment TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN cpu_s REAL;
ALTER TABLE tasks ADD COLUMN peak_memory_bytes INTEGER;
"""

# v14: a shared grid. Each task has an owner (its token's name) and a queue, and is read by
# lane: the queued tasks of one owner, in one queue, of one shape (what placement reads of a
# task: its labels, whether a legacy worker may take it, its placement document). A dispatch
# pass visits each lane once (a loose index scan) and reads rows only of the lanes a free
# slot can take (within the quotas and concurrency limits), so what cannot run now costs
# nothing however much of it there is, and owners can be served in turn. Quotas per owner
# and per queue are rows, changed while the grid runs.
SCHEMA_V14 = """
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
UPDATE tasks SET owner = json_extract(spec, '$.submitted_by')
    WHERE json_extract(spec, '$.submitted_by') IS NOT NULL;
ALTER TABLE tasks ADD COLUMN lane TEXT GENERATED ALWAYS AS (owner || char(10) || queue
    || char(10) || labels || char(10) || legacy_ok || char(10) || placement) VIRTUAL;
CREATE INDEX tasks_lanes ON tasks (lane, priority DESC, seq) WHERE state = 'queued';
CREATE INDEX tasks_owners ON tasks (owner, queue) WHERE state = 'queued';
CREATE INDEX tasks_queues ON tasks (queue) WHERE state = 'queued';
CREATE INDEX tasks_by_owner ON tasks (owner, seq);
CREATE TABLE quotas (
    scope       TEXT NOT NULL,
    name        TEXT NOT NULL,
    max_queued  INTEGER,
    max_running INTEGER,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
"""

# v15: a task may say how long it is kept after it ends (its own retention); what retention
# deleted is counted by what it belonged to (a job: "n tasks expired")
SCHEMA_V15 = """
ALTER TABLE tasks ADD COLUMN retain_ms INTEGER;
CREATE TABLE expired (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    n    INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"""

# v16: an attempt sent to a worker that says Started before it spawns (`announces`): while it
# is assigned and not started, it never ran, so a worker that is gone gives it back to the queue
SCHEMA_V16 = """
ALTER TABLE attempts ADD COLUMN announces INTEGER NOT NULL DEFAULT 0;
"""

# v17: tenants are apart. An idempotency key is its owner's (unique per owner, not grid-wide:
# another owner's key neither finds nor blocks yours), and a concurrency key's limit is set
# once, by the first task that names the key in its owner's scope, or by an admin for a key
# shared grid-wide (scope ''); a task naming another limit is refused. A schedule's slot that
# would take its owner or queue past a quota makes no task: it is counted (over_quota). A
# worker id is bound with the join token it first joined with, so the ids a token mints are
# bounded
SCHEMA_V17 = """
DROP INDEX tasks_by_key;
CREATE UNIQUE INDEX tasks_by_key ON tasks (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE concurrency_keys (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    max_running INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
ALTER TABLE schedules ADD COLUMN over_quota INTEGER NOT NULL DEFAULT 0;
ALTER TABLE worker_secrets ADD COLUMN credential TEXT NOT NULL DEFAULT '';
CREATE INDEX worker_secrets_by_credential ON worker_secrets (credential);
"""

# v18: where each run of a task's output began and when it was read, so its two streams can
# be shown in the order they were written (gridrun.output): [[n, offset, at], ...] as JSON
SCHEMA_V18 = """
ALTER TABLE output ADD COLUMN marks TEXT NOT NULL DEFAULT '';
"""

# v19: arrays and jobs (gridrun.arrays): a task's index in its job, to find one by it
SCHEMA_V19 = """
ALTER TABLE tasks ADD COLUMN job_index INTEGER;
CREATE INDEX tasks_by_job_index ON tasks (job_id, job_index) WHERE job_id IS NOT NULL;
"""

# v20: allocation queues (gridrun.allocating): the queues, their allocations, and which
# master acts on them (a lease: one at a time)
SCHEMA_V20 = """
CREATE TABLE alloc_queues (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    failures   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_at    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE allocations (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    state        TEXT NOT NULL,
    workers      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    backend_id   TEXT NOT NULL DEFAULT '',
    token_hash   TEXT NOT NULL DEFAULT '',
    started_at   INTEGER,
    connected_at INTEGER,
    ended_at     INTEGER,
    error        TEXT
) WITHOUT ROWID;
CREATE INDEX allocations_by_queue ON allocations (queue, created_at);
CREATE INDEX allocations_active ON allocations (state) WHERE state IN ('queued', 'running');
CREATE TABLE alloc_leader (
    id       INTEGER PRIMARY KEY,
    master   TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
"""

# v21: files that travel with tasks (gridrun.files): uploaded inputs, by their sha256; which
# tasks use each (what keeps it); the files collected from each attempt; and the bytes of both,
# in chunks of 1 MiB (`blob`: 'i/<sha256>' for an input, 'f/<task>/<attempt>/<path>' for a
# collected file, so a task's chunks are one range of the key).
SCHEMA_V21 = """
CREATE TABLE inputs (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL DEFAULT 0,
    complete   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE task_inputs (
    task_id TEXT NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (task_id, digest)
) WITHOUT ROWID;
CREATE INDEX task_inputs_by_digest ON task_inputs (digest);
CREATE TABLE task_files (
    task_id    TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    path       TEXT NOT NULL,
    state      TEXT NOT NULL,
    size       INTEGER NOT NULL,
    digest     TEXT NOT NULL DEFAULT '',
    mode       INTEGER NOT NULL DEFAULT 420,
    reason     TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, attempt, path)
) WITHOUT ROWID;
CREATE TABLE chunks (
    blob TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (blob, seq)
);
"""

MIGRATIONS = [
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
    SCHEMA_V4,
    SCHEMA_V5,
    SCHEMA_V6,
    SCHEMA_V7,
    SCHEMA_V8,
    SCHEMA_V9,
    SCHEMA_V10,
    SCHEMA_V11,
    SCHEMA_V12,
    SCHEMA_V13,
    SCHEMA_V14,
    SCHEMA_V15,
    SCHEMA_V16,
    SCHEMA_V17,
    SCHEMA_V18,
    SCHEMA_V19,
    SCHEMA_V20,
    SCHEMA_V21,
]  # MIGRATIONS[n] brings a database from version n to n+1
SCHEMA_VERSION = len(MIGRATIONS)
