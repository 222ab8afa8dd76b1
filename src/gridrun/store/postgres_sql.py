"""The PostgreSQL schema, its migrations, and the few statements only PostgreSQL has.

The queries both stores run are in `queries`. Times are epoch milliseconds (BIGINT); flags stay
INTEGER 0/1 so that rows read the same from either backend.
"""

from gridrun.store.queries import TASK_COLUMNS

SCHEMA_V1 = """
CREATE TABLE tasks (
    seq              BIGSERIAL PRIMARY KEY,
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
    created_at       BIGINT NOT NULL,
    assigned_at      BIGINT,
    started_at       BIGINT,
    finished_at      BIGINT,
    exit_code        INTEGER,
    signal           INTEGER,
    error            TEXT,
    not_before       BIGINT NOT NULL DEFAULT 0,
    expires_at       BIGINT,
    idempotency_key  TEXT
);
CREATE INDEX tasks_queue ON tasks (priority DESC, seq) WHERE state = 'queued';
CREATE INDEX tasks_active ON tasks (worker_id) WHERE state IN ('assigned', 'running');
CREATE INDEX tasks_by_state ON tasks (state, seq);
CREATE INDEX tasks_by_worker ON tasks (worker_id, seq);
CREATE INDEX tasks_by_name ON tasks (name, seq);
CREATE UNIQUE INDEX tasks_by_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE state = 'queued' AND expires_at IS NOT NULL;

CREATE TABLE output (
    task_id TEXT NOT NULL,
    stream  INTEGER NOT NULL,
    data    BYTEA NOT NULL,
    total   BIGINT NOT NULL,
    PRIMARY KEY (task_id, stream)
);

CREATE TABLE attempts (
    task_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    assigned_at BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    exit_code   INTEGER,
    signal      INTEGER,
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    labels       TEXT NOT NULL,
    slots        INTEGER NOT NULL,
    state        TEXT NOT NULL,
    version      TEXT NOT NULL,
    legacy       INTEGER NOT NULL,
    connected_at BIGINT,
    last_seen    BIGINT,
    resources    TEXT NOT NULL DEFAULT '{}',
    master       TEXT,
    lease_until  BIGINT
);
"""

# v2: placement beyond labels (selector terms, resources), and why a task cannot be placed
SCHEMA_V2 = """
ALTER TABLE tasks ADD COLUMN placement TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN unschedulable TEXT;
"""

# v3: tasks that run after others
SCHEMA_V3 = """
CREATE TABLE deps (
    task_id  TEXT NOT NULL,
    after_id TEXT NOT NULL,
    PRIMARY KEY (task_id, after_id)
);
CREATE INDEX deps_by_after ON deps (after_id);
"""

# v4: broadcast jobs (one task per worker, found by the job's id)
SCHEMA_V4 = """
ALTER TABLE tasks ADD COLUMN job_id TEXT;
CREATE INDEX tasks_by_job ON tasks (job_id, seq) WHERE job_id IS NOT NULL;
"""

# v5: tasks made on a cron schedule, once per slot
SCHEMA_V5 = """
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

# v6: finding a retry whose backoff is over must not read the whole queue
SCHEMA_V6 = """
CREATE INDEX tasks_retry ON tasks (not_before) WHERE state = 'queued' AND not_before > 0;
"""

# v7: tasks per state, kept as they change. GET /v1/stats, the dashboard (every second per
# open tab) and /metrics counted every task: 190 ms at 1M tasks. Triggers append each change
# of state to task_count_changes (appends never wait on each other, so two masters'
# transactions do not queue behind one counter row), and `INSERT_TASKS` appends its batch's
# count (a statement trigger's transition table cost 10-25% of batched ingest);
# `FOLD_COUNTS` moves the changes into task_counts every liveness period; a count reads both.
SCHEMA_V7 = """
CREATE TABLE task_counts (state TEXT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE task_count_changes (state TEXT NOT NULL, delta BIGINT NOT NULL);
CREATE FUNCTION gridrun_count_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO task_count_changes (state, delta) VALUES (OLD.state, -1), (NEW.state, 1);
    ELSE
        INSERT INTO task_count_changes (state, delta) VALUES (OLD.state, -1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION gridrun_count_changed();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION gridrun_count_changed();
INSERT INTO task_counts (state, n) SELECT state, count(*) FROM tasks GROUP BY state;
"""

# v8: see the SQLite store's v11 (worker secrets, reports repaired; PostgreSQL text never held
# a NUL)
SCHEMA_V8 = """
CREATE TABLE worker_secrets (
    worker_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    bound_at    BIGINT NOT NULL
);
UPDATE tasks SET started_at = NULL WHERE started_at NOT BETWEEN 0 AND 253402300799999;
UPDATE tasks SET finished_at = NULL WHERE finished_at NOT BETWEEN 0 AND 253402300799999;
UPDATE attempts SET started_at = NULL WHERE started_at NOT BETWEEN 0 AND 253402300799999;
UPDATE attempts SET finished_at = NULL WHERE finished_at NOT BETWEEN 0 AND 253402300799999;
"""

# v9: see the SQLite store's v12 (the labels column is `labels`)
SCHEMA_V9 = "ALTER TABLE tasks RENAME COLUMN selector TO labels;"

# v10: see the SQLite store's v13 (attempt usage, worker containment)
SCHEMA_V10 = """
ALTER TABLE attempts ADD COLUMN cpu_s DOUBLE PRECISION;
ALTER TABLE attempts ADD COLUMN peak_memory_bytes BIGINT;
ALTER TABLE attempts ADD COLUMN io_read_bytes BIGINT;
ALTER TABLE attempts ADD COLUMN io_write_bytes BIGINT;
ALTER TABLE workers ADD COLUMN containment TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN cpu_s DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN peak_memory_bytes BIGINT;
"""

# v11: see the SQLite store's v14 (owners, queues, lanes, quotas)
SCHEMA_V11 = """
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
UPDATE tasks SET owner = spec::jsonb ->> 'submitted_by' WHERE spec::jsonb ? 'submitted_by';
ALTER TABLE tasks ADD COLUMN lane TEXT GENERATED ALWAYS AS (owner || E'\\n' || queue
    || E'\\n' || labels || E'\\n' || legacy_ok::text || E'\\n' || placement) STORED;
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
);
"""

# v12: see the SQLite store's v15 (a task's own retention, what retention deleted by job)
SCHEMA_V12 = """
ALTER TABLE tasks ADD COLUMN retain_ms BIGINT;
CREATE TABLE expired (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    n    BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""

# v13: see the SQLite store's v16 (attempts of workers that announce their starts)
SCHEMA_V13 = """
ALTER TABLE attempts ADD COLUMN announces INTEGER NOT NULL DEFAULT 0;
"""

# v14: see the SQLite store's v17 (idempotency keys per owner, concurrency keys' limits,
# schedule slots over quota)
SCHEMA_V14 = """
DROP INDEX tasks_by_key;
CREATE UNIQUE INDEX tasks_by_key ON tasks (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE concurrency_keys (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    max_running INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
ALTER TABLE schedules ADD COLUMN over_quota BIGINT NOT NULL DEFAULT 0;
ALTER TABLE worker_secrets ADD COLUMN credential TEXT NOT NULL DEFAULT '';
CREATE INDEX worker_secrets_by_credential ON worker_secrets (credential);
"""

# v15: see the SQLite store's v18 (the marks of a task's output: the order it was written)
SCHEMA_V15 = """
ALTER TABLE output ADD COLUMN marks TEXT NOT NULL DEFAULT '';
"""

# v16: see the SQLite store's v19 (a task's index in its job)
SCHEMA_V16 = """
ALTER TABLE tasks ADD COLUMN job_index BIGINT;
CREATE INDEX tasks_by_job_index ON tasks (job_id, job_index) WHERE job_id IS NOT NULL;
"""

# v17: see the SQLite store's v20 (allocation queues)
SCHEMA_V17 = """
CREATE TABLE alloc_queues (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    failures   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_at    BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE allocations (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    state        TEXT NOT NULL,
    workers      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    backend_id   TEXT NOT NULL DEFAULT '',
    token_hash   TEXT NOT NULL DEFAULT '',
    started_at   BIGINT,
    connected_at BIGINT,
    ended_at     BIGINT,
    error        TEXT
);
CREATE INDEX allocations_by_queue ON allocations (queue, created_at);
CREATE INDEX allocations_active ON allocations (state) WHERE state IN ('queued', 'running');
CREATE TABLE alloc_leader (
    id       BIGINT PRIMARY KEY,
    master   TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
"""

# v18: files that travel with tasks (gridrun.files): uploaded inputs, by their sha256; which
# tasks use each (what keeps it); the files collected from each attempt; and the bytes of both,
# in chunks of 1 MiB (`blob`: 'i/<sha256>' for an input, 'f/<task>/<attempt>/<path>' for a
# collected file, so a task's chunks are one range of the key).
SCHEMA_V18 = """
CREATE TABLE inputs (
    digest     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL DEFAULT 0,
    complete   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE task_inputs (
    task_id TEXT NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (task_id, digest)
);
CREATE INDEX task_inputs_by_digest ON task_inputs (digest);
CREATE TABLE task_files (
    task_id    TEXT NOT NULL,
    attempt    BIGINT NOT NULL,
    path       TEXT NOT NULL,
    state      TEXT NOT NULL,
    size       BIGINT NOT NULL,
    digest     TEXT NOT NULL DEFAULT '',
    mode       BIGINT NOT NULL DEFAULT 420,
    reason     TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (task_id, attempt, path)
);
CREATE TABLE chunks (
    blob TEXT NOT NULL,
    seq  BIGINT NOT NULL,
    data BYTEA NOT NULL,
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
]  # MIGRATIONS[n] brings a database from version n to n+1
SCHEMA_VERSION = len(MIGRATIONS)

# every master migrates on start; the first takes this lock and the others wait, then find
# the schema current
MIGRATION_LOCK = 0x67726964  # "grid"
TAKE_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock($1)"
TAKE_CLAIM_LOCK = "SELECT pg_advisory_xact_lock(1735551332)"  # "gr" "id": see Dialect.claim_lock
TRY_GC_LOCK = "SELECT pg_try_advisory_xact_lock(1735551333)"  # see Dialect.gc_lock
CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS gridrun_schema (version INTEGER NOT NULL)"
SELECT_VERSION = "SELECT coalesce(max(version), 0) FROM gridrun_schema"
SET_VERSION = "DELETE FROM gridrun_schema; INSERT INTO gridrun_schema (version) VALUES ({version})"

INSERT_TASKS = (
    "WITH added AS (INSERT INTO tasks (id, name, spec, priority, labels, legacy_ok, state,"
    " created_at, expires_at, idempotency_key, placement, job_id, owner, queue, retain_ms,"
    " job_index)"
    " SELECT id, name, spec, priority, labels, legacy_ok, 'queued', created_at, expires_at,"
    " idempotency_key, placement, job_id, owner, queue, retain_ms, job_index"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],"
    " $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],"
    " $13::text[], $14::bigint[], $15::bigint[]) AS t (id, name, spec, priority, labels,"
    " legacy_ok, created_at, expires_at, idempotency_key, placement, job_id, owner, queue,"
    " retain_ms, job_index)"
    " RETURNING id, seq),"
    " counted AS (INSERT INTO task_count_changes (state, delta)"
    " SELECT 'queued', count(*) FROM added)"
    " SELECT id, seq FROM added"
)
CHANNEL = "gridrun"

COUNT_BY_STATE = (
    "SELECT state, sum(n)::bigint FROM (SELECT state, n FROM task_counts"
    " UNION ALL SELECT state, delta FROM task_count_changes) AS c GROUP BY state"
    " HAVING sum(n) > 0"
)
# One master folds at a time (the others skip): two folds would lock the same totals in
# whatever order their groups came, and could deadlock.
COUNTS_LOCK = 0x636F756E  # "coun"
TRY_COUNTS_LOCK = "SELECT pg_try_advisory_xact_lock(?)"
FOLD_COUNTS = (
    "WITH moved AS (DELETE FROM task_count_changes RETURNING state, delta)"
    " INSERT INTO task_counts AS c (state, n) SELECT state, sum(delta) FROM moved"
    " GROUP BY state ON CONFLICT (state) DO UPDATE SET n = c.n + excluded.n"
)


def _qualified(columns: str, table: str) -> str:
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


# A dispatch pass's claim in one round trip: DispatchVerbs._claim's four statements as one.
# The workers must be this master's ($3; locked FOR SHARE), the tasks still queued (locked;
# those another master's step holds are skipped); each claimed row comes back as the claim
# left it, in the order of the pairs ($1 task ids, $2 worker ids); the attempt before's output
# goes, the new attempt is recorded ($4 its state, $5 now, $6 the workers that announce).
CLAIM_BATCH = f"""
WITH pairs AS (
    SELECT t, w, n FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS p(t, w, n)
), owned AS (
    SELECT id FROM workers WHERE id IN (SELECT w FROM pairs) AND master = $3 FOR SHARE
), claimable AS (
    SELECT tasks.id, pairs.w, pairs.n FROM tasks JOIN pairs ON pairs.t = tasks.id
    WHERE tasks.state = 'queued' AND pairs.w IN (SELECT id FROM owned)
    FOR UPDATE OF tasks SKIP LOCKED
), claimed AS (
    UPDATE tasks SET state = $4, attempt = tasks.attempt + 1, worker_id = claimable.w,
        assigned_at = $5, started_at = NULL, finished_at = NULL, exit_code = NULL,
        signal = NULL, error = NULL, unschedulable = NULL
    FROM claimable WHERE tasks.id = claimable.id
    RETURNING claimable.n, {_qualified(TASK_COLUMNS, "tasks")}
), dropped AS (
    DELETE FROM output WHERE task_id IN (SELECT id FROM claimed WHERE attempt > 1)
), recorded AS (
    INSERT INTO attempts (task_id, attempt, worker_id, state, assigned_at, announces)
    SELECT id, attempt, worker_id, $4, $5, (worker_id = ANY($6::text[]))::int FROM claimed
)
SELECT {TASK_COLUMNS} FROM claimed ORDER BY n
"""
