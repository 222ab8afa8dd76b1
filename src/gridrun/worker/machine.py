"""What the machine a worker runs on offers tasks: CPUs, memory, GPUs."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

from gridrun._proto import worker_pb2 as pb
from gridrun.worker.config import WorkerConfig


def detect_gpus() -> int:
    """GPUs on this machine: `nvidia-smi -L` when it is installed, else NVIDIA device files."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            listing = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            return sum(line.startswith("GPU ") for line in listing.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    return len(glob.glob("/dev/nvidia[0-9]*"))


def machine_resources(config: WorkerConfig) -> pb.Resources:
    """What this worker offers tasks: the machine's CPUs, memory and GPUs, or the flags'."""
    memory = config.memory_mb
    if memory is None:
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        except (ValueError, OSError):
            memory = 0
    cpus = config.cpus if config.cpus is not None else os.cpu_count() or 1
    gpus = config.gpus if config.gpus is not None else detect_gpus()
    return pb.Resources(cpus=cpus, memory_mb=memory, gpus=gpus)


class GpuPool:
    """The GPU indices of this machine that no running attempt holds."""

    def __init__(self, count: int) -> None:
        self._free = list(range(count))
        self._held: dict[object, list[int]] = {}

    @property
    def free(self) -> int:
        return len(self._free)

    def peek(self, n: int) -> list[int]:
        """The indices `take(n)` would give."""
        return self._free[:n]

    def take(self, holder: object, n: int) -> list[int]:
        taken, self._free = self._free[:n], self._free[n:]
        self._held[holder] = taken
        return taken

    def give_back(self, holder: object) -> None:
        self._free = sorted(self._free + self._held.pop(holder, []))
