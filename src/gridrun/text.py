"""Text that came from a task, a worker or a client, made safe to show a person.

A task's name, argv, labels or error, and a worker's hostname or id, are written by someone
else: printed raw, an escape sequence in them clears the screen of whoever runs `gridrun ls`
or sets their terminal's title, and a newline forges a line in the master's log. Every CLI
renderer and the text log pass such text through `visible()`, the one place that decides what
is shown escaped. Output a task writes (`gridrun logs`, `run`) is not such text: it is the
task's own bytes, given back byte for byte.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (a terminal may read U+009B as CSI), and the invisible
# characters that reorder or hide text: zero-width ones, line/paragraph separators and the
# bidirectional overrides and isolates (a command shown reversed is not what runs)
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control or invisible character written as an escape (`\\n`, `\\t`,
    `\\x1b`, `\\u202e`): one line, and nothing in it acts on the terminal."""
    return _HIDDEN.sub(_escaped, text)


SHORT_ID = 8  # the digits of an id's tail a terminal shows (its random part; see short_ids)


def short_id(whole: str) -> str:
    """How a terminal shows a task's or a job's id: its last digits, which every command
    takes back (a unique prefix or tail of 6 digits or more names it)."""
    return whole[-SHORT_ID:] if len(whole) == 24 else whole
