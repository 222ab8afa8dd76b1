"""A one-node Slurm of the tests' own: munged, slurmctld and slurmd on this host, on free
loopback ports, with their config, keys, state and logs in a temp dir (Debian's slurm-wlm and
munge, installed by scripts/ensure_slurm.sh). The clients (sbatch, squeue, scancel) find it by
SLURM_CONF. Everything it started is stopped at the end, its jobs cancelled first."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def missing() -> str | None:
    """Why this machine cannot run the tests' Slurm (None: it can)."""
    absent = [d for d in DAEMONS if shutil.which(d) is None]
    if absent:
        return f"{', '.join(absent)} not installed (scripts/ensure_slurm.sh installs them)"
    if os.geteuid() != 0:
        return "the tests' Slurm runs its daemons as root"
    return None


class Slurm:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.node = socket.gethostname().split(".")[0]
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        root = self.root
        for sub in ("state", "spool", "log", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        key = root / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        socket_path = root / "run" / "munge.sock"
        self._spawn("munged", [
            "munged", "--foreground", "--force", f"--socket={socket_path}",
            f"--key-file={key}", f"--log-file={root / 'log' / 'munged.log'}",
            f"--pid-file={root / 'run' / 'munged.pid'}", f"--seed-file={root / 'run' / 'seed'}",
        ])  # fmt: skip
        _wait(socket_path.exists, 10, "munged did not make its socket")
        self.conf.write_text(
            "\n".join([
                "ClusterName=gridtest",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "AuthType=auth/munge",
                f"AuthInfo=socket={socket_path}",
                "CredType=cred/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "SchedulerType=sched/builtin",
                "SchedulerParameters=sched_interval=1",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "MpiDefault=none",
                "SlurmdParameters=config_overrides",
                "ReturnToService=2",
                "InactiveLimit=0",
                "MinJobAge=600",
                "KillWait=5",
                # 8 CPUs on a 2-core machine (config_overrides): several allocations at once
                f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
                " OverSubscribe=YES",
            ]) + "\n"
        )  # fmt: skip
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        _wait(lambda: self._run("sinfo", "-h").returncode == 0, 30, "slurmctld did not answer")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        _wait(
            lambda: self._run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle",
            30,
            f"the node did not come up idle: {self.log('slurmctld')}",
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.root / "log" / f"{name}.out", "ab") as out:
            self._procs.append(
                subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            )

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=30)

    def jobs(self) -> dict[str, str]:
        """Job id -> state (PENDING, RUNNING, COMPLETED, CANCELLED, ...), ended ones too."""
        out = self._run("squeue", "-h", "--states=all", "-o", "%i|%T").stdout
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def active(self) -> dict[str, str]:
        return {j: s for j, s in self.jobs().items() if s in ("PENDING", "RUNNING", "COMPLETING")}

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            running = list(self.active())
            if running:
                self._run("scancel", *running)
                _wait(lambda: not self.active(), 20, "jobs still running")
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.2)
    raise AssertionError(what)
