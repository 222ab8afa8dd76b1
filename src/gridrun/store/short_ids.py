"""Short ids: a task or a job named by a unique prefix of its id (as Nomad and kubectl take
them) or by its tail, which is what a terminal shows (`gridrun ls`): ids begin with their
time of creation, so the tasks of one minute share a long prefix, and their last digits are
random)."""

from __future__ import annotations

import re

from gridrun.errors import AmbiguousId
from gridrun.store.relational_tx import Tx

ID_LENGTH = 24
SHORTEST = 6  # the fewest digits that name one (a terminal shows 8: gridrun.text.short_id)
CANDIDATES = 10  # named in the error of an ambiguous one
_HEX = re.compile(r"[0-9a-f]+")


async def resolve(tx: Tx, given: str, column: str, kind: str) -> str:
    """The whole id in `column` of tasks (id, job_id) that `given` names: given whole, or a
    unique prefix, or a unique tail, of at least SHORTEST digits. Not found: `given` itself
    (the caller's lookup says so); more than one: AmbiguousId listing them."""
    text = given.lower()
    if len(text) >= ID_LENGTH or len(text) < SHORTEST or not _HEX.fullmatch(text):
        return given
    upper = text[:-1] + chr(ord(text[-1]) + 1)
    found = [
        r[0]
        for r in await tx.all(
            f"SELECT DISTINCT {column} FROM tasks WHERE {column} >= ? AND {column} < ?"
            f" ORDER BY {column} LIMIT ?",
            text,
            upper,
            CANDIDATES + 1,
        )
    ]
    if not found:
        found = [
            r[0]
            for r in await tx.all(
                f"SELECT DISTINCT {column} FROM tasks WHERE {column} LIKE ? LIMIT ?",
                "%" + text,
                CANDIDATES + 1,
            )
        ]
    if len(found) > 1:
        listed = ", ".join(found[:CANDIDATES]) + (" ..." if len(found) > CANDIDATES else "")
        raise AmbiguousId(f"{given!r} names more than one {kind}: {listed}; give more digits")
    return found[0] if found else given
