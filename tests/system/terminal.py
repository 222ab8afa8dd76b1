"""A process on a pseudo-terminal, read as a user would see it (colour codes removed)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A process on a pty; what it has written so far, without colour codes."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: str) -> None:
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=child, stdout=child, stderr=child, env=env, cwd=cwd, close_fds=True
        )
        os.close(child)
        self.text = ""
        self.raw = b""  # every byte written to the pty, escape sequences and all

    def read_until(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.text[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the process ended and closed the pty
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    assert re.search(pattern, self.text), self.text[-2000:]
                self.raw += chunk
                self.text += ANSI.sub("", chunk.decode(errors="replace"))
        return self.text

    def close(self) -> int:
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.fd)
        return code

    def interrupt(self) -> None:
        """Ctrl-C."""
        self.proc.send_signal(signal.SIGINT)
