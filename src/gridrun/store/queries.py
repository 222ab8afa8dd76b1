"""All queries of the SQL stores, by name, written once for SQLite and PostgreSQL alike.

Placeholders are `?` (the PostgreSQL connector numbers them); row locks are appended by each
backend's `Dialect`, since SQLite serializes its writers and has no `FOR UPDATE`.
"""

TASK_COLUMNS = (
    "seq, id, spec, state, attempt, worker_id, cancel_requested, created_at, assigned_at,"
    " started_at, finished_at, exit_code, signal, error, not_before, unschedulable, cpu_s,"
    " peak_memory_bytes"
)
SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
INSERT_TASK = (
    "INSERT INTO tasks (id, name, spec, priority, labels, legacy_ok, state, created_at,"
    " expires_at, idempotency_key, placement, job_id, owner, queue, retain_ms, job_index)"
    " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# concurrency keys: scope '' is a grid-wide key an admin declared, else the owner whose key it is
SELECT_CONCURRENCY_LIMIT = "SELECT max_running FROM concurrency_keys WHERE scope = ? AND key = ?"
INSERT_CONCURRENCY_KEY = "INSERT INTO concurrency_keys (scope, key, max_running) VALUES (?, ?, ?)"
DELETE_CONCURRENCY_KEY = "DELETE FROM concurrency_keys WHERE scope = ? AND key = ?"
SELECT_CONCURRENCY_KEYS = (
    "SELECT scope, key, max_running FROM concurrency_keys ORDER BY scope, key LIMIT ?"
)

# an idempotency key is its owner's: another owner's task with the same key is not found
SELECT_TASK_BY_KEY = f"SELECT {TASK_COLUMNS} FROM tasks WHERE owner = ? AND idempotency_key = ?"
SELECT_QUEUED = (
    "SELECT id, priority, seq, labels, legacy_ok, placement, unschedulable, owner, queue"
    " FROM tasks {index} WHERE state = 'queued'"
    " AND not_before <= ? {after} ORDER BY priority DESC, seq LIMIT ?"
)
QUEUED_AFTER = "AND (priority < ? OR (priority = ? AND seq > ?))"
# the lanes of the queued tasks after a cursor, in order: a loose index scan (one seek each,
# however many tasks share a lane), at most `?` of them
SELECT_LANES = (
    "WITH RECURSIVE s (lane, n) AS ("
    " SELECT min(lane), 1 FROM tasks {index} WHERE state = 'queued' AND lane > ?"
    " UNION ALL SELECT (SELECT min(lane) FROM tasks {index} WHERE state = 'queued'"
    " AND lane > s.lane), n + 1 FROM s WHERE s.lane IS NOT NULL AND n < ?"
    ") SELECT lane FROM s WHERE lane IS NOT NULL"
)
SELECT_LANE_HEAD = (
    "SELECT id, priority, seq, labels, legacy_ok, placement, unschedulable, owner, queue"
    " FROM tasks {index} WHERE state = 'queued' AND lane = ?"
    " AND not_before <= ? ORDER BY priority DESC, seq LIMIT ?"
)
SELECT_RUNNING_BY = (
    "SELECT owner, queue, placement FROM tasks WHERE state IN ('assigned', 'running')"
)
QUEUED_BY_OWNER = (
    "SELECT owner, queue, count(*) FROM tasks {index} WHERE state = 'queued' GROUP BY owner, queue"
)
RUNNING_BY_OWNER = (
    "SELECT owner, queue, state, count(*) FROM tasks WHERE state IN ('assigned', 'running')"
    " GROUP BY owner, queue, state"
)
SELECT_QUOTAS = "SELECT scope, name, max_queued, max_running FROM quotas ORDER BY scope, name"
DELETE_QUOTA = "DELETE FROM quotas WHERE scope = ? AND name = ?"
INSERT_QUOTA = "INSERT INTO quotas (scope, name, max_queued, max_running) VALUES (?, ?, ?, ?)"
COUNT_QUEUED_OWNER = (
    "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE state = 'queued' AND owner = ? LIMIT ?) q"
)
COUNT_QUEUED_QUEUE = (
    "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE state = 'queued' AND queue = ? LIMIT ?) q"
)
CLAIM = (
    "UPDATE tasks SET state = ?, attempt = attempt + 1, worker_id = ?, assigned_at = ?,"
    " started_at = NULL, finished_at = NULL, exit_code = NULL, signal = NULL, error = NULL,"
    " unschedulable = NULL WHERE id = ?"
)
MARK_UNSCHEDULABLE = "UPDATE tasks SET unschedulable = ? WHERE id = ? AND state = 'queued'"
START = "UPDATE tasks SET state = ?, started_at = ? WHERE id = ?"
# (and whether any task runs after it: only then are its dependents looked for)
FINISH = (
    "UPDATE tasks SET state = ?, started_at = coalesce(?, started_at), finished_at = ?,"
    " exit_code = ?, signal = ?, error = ?, cpu_s = ?, peak_memory_bytes = ? WHERE id = ?"
    " RETURNING EXISTS (SELECT 1 FROM deps WHERE deps.after_id = tasks.id)"
)
REQUEUE = (
    "UPDATE tasks SET state = ?, worker_id = NULL, assigned_at = NULL, started_at = NULL,"
    " not_before = ?, error = ? WHERE id = ?"
)
SELECT_EXPIRED = (
    f"SELECT {TASK_COLUMNS} FROM tasks {{index}} WHERE state = 'queued'"
    " AND expires_at IS NOT NULL"
    " AND expires_at <= ? ORDER BY expires_at LIMIT ?"
)
INSERT_ATTEMPT = (
    "INSERT INTO attempts (task_id, attempt, worker_id, state, assigned_at, announces)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
SELECT_ANNOUNCES = "SELECT announces FROM attempts WHERE task_id = ? AND attempt = ?"
START_ATTEMPT = "UPDATE attempts SET state = ?, started_at = ? WHERE task_id = ? AND attempt = ?"
END_ATTEMPT = (
    "UPDATE attempts SET state = ?, started_at = coalesce(?, started_at), finished_at = ?,"
    " exit_code = ?, signal = ?, error = ?, cpu_s = ?, peak_memory_bytes = ?,"
    " io_read_bytes = ?, io_write_bytes = ? WHERE task_id = ? AND attempt = ?"
)
COUNT_TRIES = (
    "SELECT count(*) FROM attempts WHERE task_id = ? AND state != 'queued' AND attempt < ?"
)
SELECT_ATTEMPTS = (
    "SELECT task_id, attempt, worker_id, state, assigned_at, started_at, finished_at, exit_code,"
    " signal, error, cpu_s, peak_memory_bytes, io_read_bytes, io_write_bytes FROM attempts"
    " WHERE task_id = ? ORDER BY attempt"
)
SELECT_DUE = (
    "SELECT 1 FROM tasks {index} WHERE state = 'queued' AND not_before > 0 AND not_before <= ?"
    " LIMIT 1"
)
END = "UPDATE tasks SET state = ?, finished_at = ?, error = ? WHERE id = ?"
FLAG_CANCEL = "UPDATE tasks SET cancel_requested = 1 WHERE id = ?"
SELECT_ACTIVE = (
    f"SELECT {TASK_COLUMNS} FROM tasks {{index}}"
    " WHERE worker_id = ? AND state IN ('assigned', 'running') ORDER BY seq"
)
SELECT_OUTPUT = "SELECT stream, data, total, marks FROM output WHERE task_id = ?"
UPSERT_OUTPUT = (
    "INSERT INTO output (task_id, stream, data, total, marks) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (task_id, stream) DO UPDATE SET data = excluded.data, total = excluded.total,"
    " marks = excluded.marks"
)
DELETE_OUTPUT = "DELETE FROM output WHERE task_id = ?"
UPSERT_WORKER = (
    "INSERT INTO workers (id, hostname, labels, slots, state, version, legacy, connected_at,"
    " last_seen, resources, master, lease_until, containment)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, labels = excluded.labels,"
    " slots = excluded.slots, state = excluded.state, version = excluded.version,"
    " legacy = excluded.legacy, connected_at = excluded.connected_at,"
    " last_seen = excluded.last_seen, resources = excluded.resources,"
    " master = excluded.master, lease_until = excluded.lease_until,"
    " containment = excluded.containment"
    # a master that lost the worker to another may not mark it offline or draining
    " WHERE excluded.state = 'online' OR workers.master IS NULL"
    " OR workers.master = excluded.master"
)
BIND_WORKER = (
    "INSERT INTO worker_secrets (worker_id, secret_hash, bound_at, credential)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (worker_id) DO NOTHING"
)
# the ids bound under one join token, counted up to a limit (an index range, not a scan)
COUNT_BOUND = (
    "SELECT count(*) FROM (SELECT 1 FROM worker_secrets WHERE credential = ? LIMIT ?) AS b"
)
# workers unheard of since then that no task ever named (a task's worker_id stays on it)
SELECT_UNUSED = (
    "SELECT id FROM workers WHERE (lease_until IS NULL OR lease_until < ?)"
    " AND (last_seen IS NULL OR last_seen < ?)"
    " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.worker_id = workers.id)"
)
SELECT_WORKER_SECRET = "SELECT secret_hash FROM worker_secrets WHERE worker_id = ?"
SELECT_FORGOTTEN = (
    "SELECT id FROM workers WHERE (lease_until IS NULL OR lease_until < ?)"
    " AND (last_seen IS NULL OR last_seen < ?)"
    " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.worker_id = workers.id"
    " AND t.state IN ('assigned', 'running'))"
)
FORGET_WORKER = "DELETE FROM workers WHERE id = ?"
FORGET_SECRET = "DELETE FROM worker_secrets WHERE worker_id = ?"
RENEW_LEASE = "UPDATE workers SET last_seen = ?, lease_until = ? WHERE id = ? AND master = ?"
SELECT_LAPSED = (
    "SELECT DISTINCT t.worker_id FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id"
    " WHERE t.state IN ('assigned', 'running') AND (w.lease_until IS NULL OR w.lease_until < ?)"
)
SELECT_ASSIGNED_HERE = (
    "SELECT t.id, t.attempt, t.worker_id FROM tasks t JOIN workers w ON w.id = t.worker_id"
    " WHERE t.state = 'assigned' AND t.assigned_at < ? AND w.master = ?"
)
SELECT_WORKER_MASTERS = "SELECT id, master FROM workers WHERE id IN ({marks})"
SELECT_WORKER_MASTER = "SELECT state, master, lease_until FROM workers WHERE id = ?"
SELECT_CLAIMABLE = (
    f"SELECT {TASK_COLUMNS} FROM tasks {{index}} WHERE id IN ({{marks}}) AND state = 'queued'"
)
# a worker's started tasks and those not started yet, from one scan of the active tasks
SELECT_WORKERS = (
    "SELECT w.id, w.hostname, w.labels, w.slots, w.state, w.version, w.legacy, w.connected_at,"
    " w.last_seen, coalesce(a.running, 0), w.resources, w.lease_until, w.containment,"
    " coalesce(a.assigned, 0) FROM workers w LEFT JOIN (SELECT worker_id,"
    " sum(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS running,"
    " sum(CASE WHEN state = 'assigned' THEN 1 ELSE 0 END) AS assigned"
    " FROM tasks {index} WHERE state IN ('assigned', 'running') GROUP BY worker_id) a"
    " ON a.worker_id = w.id"
    " ORDER BY w.id"
)
SELECT_STATES = "SELECT id, state FROM tasks WHERE id IN ({marks})"
SET_STATE = "UPDATE tasks SET state = ? WHERE id = ?"
INSERT_DEP = "INSERT INTO deps (task_id, after_id) VALUES (?, ?)"
SELECT_WAITING_DEPENDENTS = (
    "SELECT t.id FROM deps d JOIN tasks t {index} ON t.id = d.task_id"
    " WHERE d.after_id = ? AND t.state = 'waiting' ORDER BY t.seq"
)
COUNT_UNMET = (
    "SELECT count(*) FROM deps d JOIN tasks t ON t.id = d.after_id"
    " WHERE d.task_id = ? AND t.state != 'succeeded'"
)
SCHEDULE_COLUMNS = "id, name, cron, spec, created_at, next_at, last_fired, last_task, over_quota"
INSERT_SCHEDULE = (
    "INSERT INTO schedules (id, name, cron, spec, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?)"
)
SELECT_SCHEDULES = f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_at, id"
SELECT_SCHEDULE = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?"
DELETE_SCHEDULE = "DELETE FROM schedules WHERE id = ?"
SELECT_DUE_SCHEDULES = (
    f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_at <= ? ORDER BY next_at LIMIT ?"
)
SELECT_SCHEDULE_SLOT = "SELECT next_at FROM schedules WHERE id = ?"
ADVANCE_SCHEDULE = "UPDATE schedules SET next_at = ?, last_fired = ?, last_task = ? WHERE id = ?"
SKIP_SCHEDULE_SLOT = "UPDATE schedules SET next_at = ?, over_quota = over_quota + 1 WHERE id = ?"

# retention (gridrun.store.retention): ended tasks past their time, not waited for by a task
# that has not ended (a waiting task reads its dependencies' states)
_COLLECTABLE = (
    " FROM tasks t WHERE t.state IN ({states}) AND {when} < ?"
    " {queues}"
    " AND NOT EXISTS (SELECT 1 FROM deps d JOIN tasks w ON w.id = d.task_id"
    " WHERE d.after_id = t.id AND w.state IN ('waiting', 'queued', 'assigned', 'running'))"
)
SELECT_COLLECTABLE = "SELECT t.id" + _COLLECTABLE + " ORDER BY t.seq LIMIT ?"
COUNT_COLLECTABLE = "SELECT count(*)" + _COLLECTABLE
DELETE_TASK_OUTPUT = "DELETE FROM output WHERE task_id = ?"
DELETE_TASK_ATTEMPTS = "DELETE FROM attempts WHERE task_id = ?"
DELETE_TASK_DEPS = "DELETE FROM deps WHERE task_id = ?"
DELETE_DEPS_ON = "DELETE FROM deps WHERE after_id = ?"
DELETE_TASK = "DELETE FROM tasks WHERE id = ?"
SELECT_OUTPUT_BYTES = "SELECT coalesce(sum(length(data)), 0) FROM output"
SELECT_OLDEST_TASK = "SELECT created_at FROM tasks ORDER BY seq LIMIT 1"
# the output budget: the oldest ended tasks whose output is still kept, and dropping it (the
# row stays, with its total: every byte then counts as dropped)
SELECT_OUTPUT_TO_EXPIRE = (
    "SELECT t.id, sum(length(o.data)) FROM tasks t JOIN output o ON o.task_id = t.id"
    " WHERE t.state IN ({states}) AND length(o.data) > 0 GROUP BY t.id, t.seq ORDER BY t.seq"
    " LIMIT ?"
)
EXPIRE_OUTPUT = "UPDATE output SET data = ? WHERE task_id = ?"
# when a task ended, for retention: by the store-wide cutoff (`own`: not for tasks with a
# retention of their own, or regardless), or by its own retention against now
ENDED_AT = "coalesce(t.finished_at, t.created_at)"
OWN_RETENTION_ENDS = "coalesce(t.finished_at, t.created_at) + t.retain_ms"
COUNT_JOBS_OF = (
    "SELECT job_id, count(*) FROM tasks WHERE id IN ({marks}) AND job_id IS NOT NULL"
    " GROUP BY job_id"
)
COUNT_EXPIRED = (
    "INSERT INTO expired (kind, id, n) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, id) DO UPDATE SET n = expired.n + excluded.n"
)
SELECT_EXPIRED_COUNT = "SELECT n FROM expired WHERE kind = ? AND id = ?"

# allocation queues (store.allocations)
QUEUE_COLUMNS = "name, config, state, reason, failures, created_at, next_at"
INSERT_QUEUE = (
    f"INSERT INTO alloc_queues ({QUEUE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (name) DO NOTHING"
)
SELECT_QUEUES = f"SELECT {QUEUE_COLUMNS} FROM alloc_queues ORDER BY name"
SELECT_QUEUE = f"SELECT {QUEUE_COLUMNS} FROM alloc_queues WHERE name = ?"
UPDATE_QUEUE = (
    "UPDATE alloc_queues SET state = ?, reason = ?, failures = ?, next_at = ? WHERE name = ?"
)
DELETE_QUEUE = "DELETE FROM alloc_queues WHERE name = ?"
ALLOC_COLUMNS = (
    "id, queue, state, workers, created_at, backend_id, token_hash, started_at, connected_at,"
    " ended_at, error"
)
SAVE_ALLOCATION = (
    f"INSERT INTO allocations ({ALLOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET state = excluded.state, backend_id = excluded.backend_id,"
    " started_at = excluded.started_at, connected_at = excluded.connected_at,"
    " ended_at = excluded.ended_at, error = excluded.error"
)
SELECT_ALLOCATIONS_OF = (
    f"SELECT {ALLOC_COLUMNS} FROM allocations WHERE queue = ? ORDER BY created_at DESC, id LIMIT ?"
)
SELECT_ACTIVE_ALLOCATIONS = (
    f"SELECT {ALLOC_COLUMNS} FROM allocations WHERE state IN ('queued', 'running')"
    " ORDER BY created_at, id"
)
SELECT_ALLOCATION = f"SELECT {ALLOC_COLUMNS} FROM allocations WHERE id = ?"
DELETE_ALLOCATIONS_OF = "DELETE FROM allocations WHERE queue = ?"
# one master acts on the queues at a time: it holds this lease and renews it
TAKE_ALLOC_LEAD = (
    "INSERT INTO alloc_leader (id, master, until_ms) VALUES (1, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET master = excluded.master, until_ms = excluded.until_ms"
    " WHERE alloc_leader.master = excluded.master OR alloc_leader.until_ms < ?"
)
SELECT_ALLOC_LEAD = "SELECT master, until_ms FROM alloc_leader WHERE id = 1"

# files (store.files): inputs by sha256, the tasks that use them, collected files, chunks
SELECT_INPUT = "SELECT size, complete, created_at FROM inputs WHERE digest = ?"
SELECT_INPUTS = "SELECT digest, size FROM inputs WHERE complete = 1 AND digest IN ({marks})"
BEGIN_INPUT = (
    "INSERT INTO inputs (digest, size, complete, created_at) VALUES (?, 0, 0, ?)"
    " ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at"
    " WHERE inputs.complete = 0"
)
FINISH_INPUT = "UPDATE inputs SET size = ?, complete = 1 WHERE digest = ?"
HOLD_INPUT = "INSERT INTO task_inputs (task_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING"
PUT_CHUNK = (
    "INSERT INTO chunks (blob, seq, data) VALUES (?, ?, ?)"
    " ON CONFLICT (blob, seq) DO UPDATE SET data = excluded.data"
)
SELECT_CHUNK = "SELECT data FROM chunks WHERE blob = ? AND seq = ?"
DELETE_CHUNKS = "DELETE FROM chunks WHERE blob = ?"
DELETE_CHUNKS_BETWEEN = "DELETE FROM chunks WHERE blob >= ? AND blob < ?"
FILE_COLUMNS = "task_id, attempt, path, state, size, digest, mode, reason, created_at"
PUT_FILE = (
    f"INSERT INTO task_files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (task_id, attempt, path) DO UPDATE SET state = excluded.state,"
    " size = excluded.size, digest = excluded.digest, mode = excluded.mode,"
    " reason = excluded.reason, created_at = excluded.created_at"
)
SELECT_FILES = f"SELECT {FILE_COLUMNS} FROM task_files WHERE task_id = ? ORDER BY attempt, path"
SELECT_FILE = (
    f"SELECT {FILE_COLUMNS} FROM task_files WHERE task_id = ? AND attempt = ? AND path = ?"
)
DELETE_TASK_FILES = "DELETE FROM task_files WHERE task_id = ?"
DELETE_TASK_INPUTS = "DELETE FROM task_inputs WHERE task_id = ?"
SELECT_ATTEMPT_FILE_BYTES = (
    "SELECT coalesce(sum(size), 0) FROM task_files"
    " WHERE task_id = ? AND attempt = ? AND path <> ? AND state <> 'dropped'"
)
SELECT_FILE_BYTES = "SELECT coalesce(sum(size), 0) FROM task_files WHERE state <> 'dropped'"
SELECT_INPUT_BYTES = "SELECT coalesce(sum(size), 0), count(*) FROM inputs"
# inputs no task uses any more (or whose upload never ended), uploaded before the cutoff
SELECT_UNUSED_INPUTS = (
    "SELECT i.digest FROM inputs i WHERE i.created_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM task_inputs u WHERE u.digest = i.digest) LIMIT ?"
)
DELETE_INPUT = "DELETE FROM inputs WHERE digest = ?"
DELETE_INCOMPLETE_INPUT = "DELETE FROM inputs WHERE digest = ? AND complete = 0"
# the output budget counts collected files too: the oldest ended tasks' files, and dropping them
SELECT_FILES_TO_EXPIRE = (
    "SELECT t.id, sum(f.size) FROM tasks t JOIN task_files f ON f.task_id = t.id"
    " WHERE t.state IN ({states}) AND f.state = 'complete' GROUP BY t.id, t.seq ORDER BY t.seq"
    " LIMIT ?"
)
EXPIRE_FILES = (
    "UPDATE task_files SET state = 'dropped', reason = ? WHERE task_id = ? AND state = 'complete'"
)
