"""The worker's guardian (`python -m gridrun.worker.guardian SPEC`): it waits for its stdin to
end, which happens when the worker that started it exits or dies (only the worker holds the
pipe's other end), then kills every attempt group under the worker's subtree and exits. So a
SIGKILLed worker leaves no task running (see gridrun.worker.containment)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from gridrun.worker import cgroups


def main(spec: str) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the end of the pipe ends it
    config = json.loads(spec)
    while os.read(0, 4096):
        pass
    bases = [Path(b) for b in config["bases"]]
    v2 = Path(config["v2"]) if config["v2"] else None
    freezer = Path(config["freezer"]) if config["freezer"] else None
    cgroups.kill_subtree(bases, v2, freezer, remove=True)


if __name__ == "__main__":
    main(sys.argv[1])
