"""The store's retention verbs (`store.retention`, one object over the backend): deleting ended
tasks, with their attempts, output, collected files and dependency rows, in small batches
(one transaction each), never a task another one still waits for. The master runs it in the
background (`--retain`); `gridrun gc` runs it by hand."""

from __future__ import annotations

from collections.abc import Sequence

from gridrun.files import task_blobs
from gridrun.model import TERMINAL, TaskState
from gridrun.store import Own, Storage
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx, marks
from gridrun.store.task_steps import TaskSteps

GC_BATCH = 500  # tasks deleted per transaction: a short write, never one huge one
Queues = tuple[bool, Sequence[str]]  # (True: only these queues / False: all but these)
ALL_QUEUES: Queues = (False, ())


def _scope(queues: Queues, own: Own) -> tuple[str, str, list[str]]:
    """The {when} and {queues} of a retention query, and the queue names it takes."""
    where, names = _in_queues(queues)
    if own == "exclude":
        where += " AND t.retain_ms IS NULL"
    when = sql.ENDED_AT
    if own == "only":
        when, where = sql.OWN_RETENTION_ENDS, where + " AND t.retain_ms IS NOT NULL"
    return when, where, names


def _in_queues(queues: Queues) -> tuple[str, list[str]]:
    only, names = queues
    if not names:
        return ("AND 1 = 0" if only else ""), []
    clause = f"AND t.queue {'IN' if only else 'NOT IN'} ({marks(len(names))})"
    return clause, list(names)


class RetentionVerbs:
    def __init__(self, db: Db, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def collect(
        self, older_than: int, states: Sequence[TaskState], limit: int = GC_BATCH,
        dry_run: bool = False, queues: Queues = ALL_QUEUES, own: Own = "ignore",
    ) -> int:  # fmt: skip
        """Delete up to `limit` tasks in these (ended) states that ended before `older_than`
        (ms), with everything that is theirs; return how many (with `dry_run`, how many would
        be, deleting nothing). On PostgreSQL one master at a time: another's call returns 0."""
        ended = [str(s) for s in states if s in TERMINAL]
        if not ended:
            return 0

        async def step(tx: Tx) -> int:
            if not await self._db.dialect.take_gc_lock(tx):
                return 0
            when, where, names = _scope(queues, own)
            query = sql.SELECT_COLLECTABLE.format(states=marks(len(ended)), when=when, queues=where)
            rows = await tx.all(query, *ended, older_than, *names, limit)
            ids = [r[0] for r in rows]
            if dry_run or not ids:
                return len(ids)
            jobs = await tx.all(sql.COUNT_JOBS_OF.format(marks=marks(len(ids))), *ids)
            await tx.many(sql.COUNT_EXPIRED, [("job", job, n) for job, n in jobs])
            for statement in (
                sql.DELETE_TASK_OUTPUT, sql.DELETE_TASK_ATTEMPTS, sql.DELETE_TASK_DEPS,
                sql.DELETE_DEPS_ON, sql.DELETE_TASK_FILES, sql.DELETE_TASK_INPUTS,
                sql.DELETE_TASK,
            ):  # fmt: skip
                await tx.many(statement, [(i,) for i in ids])
            # their collected files' bytes (the inputs they used go once no task uses them:
            # store.files.unused_inputs)
            await tx.many(sql.DELETE_CHUNKS_BETWEEN, [task_blobs(i) for i in ids])
            return len(ids)

        return await self._db.write(step)

    async def expired_count(self, kind: str, key: str) -> int:
        async def read(tx: Tx) -> int:
            row = await tx.one(sql.SELECT_EXPIRED_COUNT, kind, key)
            return int(row[0]) if row else 0

        return await self._db.read(read)

    async def output_kept(self) -> int:
        """Bytes of output and collected files kept (what --output-budget bounds)."""

        async def read(tx: Tx) -> int:
            row = await tx.one(sql.SELECT_OUTPUT_BYTES)
            files = await tx.one(sql.SELECT_FILE_BYTES)
            return (int(row[0]) if row else 0) + (int(files[0]) if files else 0)

        return await self._db.read(read)

    async def expire_output(self, at_least: int, limit: int = GC_BATCH) -> int:
        """Drop the kept output of the oldest ended tasks that still have some, oldest first,
        until `at_least` bytes are freed (at most `limit` tasks); the task and its byte counts
        stay (all of it then counts as dropped). Returns the bytes freed."""
        ended = [str(s) for s in TERMINAL]

        async def step(tx: Tx) -> int:
            if not await self._db.dialect.take_gc_lock(tx):
                return 0
            query = sql.SELECT_OUTPUT_TO_EXPIRE.format(states=marks(len(ended)))
            chosen, freed = [], 0
            for task_id, size in await tx.all(query, *ended, limit):
                if freed >= at_least:
                    break
                chosen.append((b"", task_id))
                freed += int(size)
            await tx.many(sql.EXPIRE_OUTPUT, chosen)
            if freed < at_least:  # then the oldest tasks' collected files
                dropped = []
                query = sql.SELECT_FILES_TO_EXPIRE.format(states=marks(len(ended)))
                for task_id, size in await tx.all(query, *ended, limit):
                    if freed >= at_least:
                        break
                    dropped.append(task_id)
                    freed += int(size)
                reason = "dropped by the output budget (--output-budget)"
                await tx.many(sql.EXPIRE_FILES, [(reason, t) for t in dropped])
                await tx.many(sql.DELETE_CHUNKS_BETWEEN, [task_blobs(t) for t in dropped])
            return freed

        return await self._db.write(step)

    async def storage(self) -> Storage:
        async def read(tx: Tx) -> tuple[int, int | None, int | None, int, int]:
            output = await tx.one(sql.SELECT_OUTPUT_BYTES)
            oldest = await tx.one(sql.SELECT_OLDEST_TASK)
            size = await tx.one(self._db.dialect.db_size) if self._db.dialect.db_size else None
            files = await tx.one(sql.SELECT_FILE_BYTES)
            inputs = await tx.one(sql.SELECT_INPUT_BYTES)
            return (
                int(output[0]) if output else 0,
                int(oldest[0]) if oldest else None,
                int(size[0]) if size else None,
                int(files[0]) if files else 0,
                int(inputs[0]) if inputs else 0,
            )

        output, oldest, size, files, inputs = await self._db.read(read)
        db_bytes, disk_used = self._db.db_files() if size is None else (size, None)
        return Storage(db_bytes, output, oldest, disk_used, files, inputs)

    def disk_free(self) -> int | None:
        return self._db.disk_free()

    def disk_used(self) -> float | None:
        return self._db.db_files()[1]

    async def reclaim(self) -> None:
        dialect = self._db.dialect
        if dialect.reclaim:
            await self._db.write(lambda tx: tx.all(dialect.reclaim))
        await self.shrink_log()

    async def shrink_log(self) -> None:
        if self._db.dialect.shrink_log:
            await self._db.read(lambda tx: tx.all(self._db.dialect.shrink_log))

    async def count_collectable(
        self, older_than: int, states: Sequence[TaskState], queues: Queues = ALL_QUEUES,
        own: Own = "ignore",
    ) -> int:  # fmt: skip
        """How many tasks `collect` would delete, all batches together (a dry run)."""
        ended = [str(s) for s in states if s in TERMINAL]
        if not ended:
            return 0
        when, where, names = _scope(queues, own)
        query = sql.COUNT_COLLECTABLE.format(states=marks(len(ended)), when=when, queues=where)

        async def read(tx: Tx) -> int:
            row = await tx.one(query, *ended, older_than, *names)
            return int(row[0]) if row is not None else 0

        return await self._db.read(read)
