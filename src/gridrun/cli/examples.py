"""The Examples section of each command's --help (kubectl's `Examples:` is the model): what a
user types most, each line a command that works as shown on a `gridrun up` grid."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, list[str]] = {
    "up": [
        "gridrun up                          # master + 2 workers on 127.0.0.1:9092",
        "gridrun up --workers 4 --masters 2  # two masters, embedded PostgreSQL",
    ],
    "master": [
        "gridrun master --db gridrun-data/gridrun.db",
        "gridrun master --db postgresql://grid@db/grid --config master.toml",
    ],
    "worker": [
        "gridrun worker --master 127.0.0.1:50051 --slots 4 --label zone=a",
        "gridrun worker --master m1:50051,m2:50051 --join-token-file join.token",
    ],
    "submit": [
        "gridrun submit -- echo hello",
        "gridrun submit --on gpu=a100 --gpus 1 --timeout 3600 -- python3 train.py",
        "gridrun submit --file nightly.txt --shell  # a task a line, a progress bar",
        "gridrun submit --stdin rows.csv -- ./load.py",
        "gridrun submit --array 1-100%10 -- ./step.sh  # a job: $GRIDRUN_ARRAY_INDEX",
        "gridrun submit --each-line shards.txt --wait -- ./prep.sh  # a task a line",
        "gridrun submit --input rows.csv --collect 'out/*' -- ./score.sh rows.csv",
    ],
    "run": [
        "gridrun run -- uname -a                     # its output, its exit code",
        "printf 'a\\nb\\n' | gridrun run -- wc -l      # stdin goes to the task",
        "gridrun run --script fix.sh -- disk-1       # ship a local script, its args",
        "gridrun run --all --on zone=a -- uptime     # once on every zone=a worker",
        "gridrun run --input-dir conf --collect '**/*.log' -- ./run.sh conf",
    ],
    "files": ["gridrun files ID                    # path, size, sha256, state"],
    "cp": [
        "gridrun cp ID:out/result.csv .      # a collected file",
        "gridrun cp ID:out/result.csv - | head",
        "gridrun cp ID: results/             # all of them",
        "gridrun cp JOB:r.json results/      # results/INDEX/r.json",
    ],
    "ls": [
        "gridrun ls --state failed --since 1h",
        "gridrun ls --sort duration --limit 5        # the five longest of all",
        "gridrun ls --json | jq -r '.[].id'",
    ],
    "show": ["gridrun show 019ac4a3f2b75c0e7d1a9f3b"],
    "logs": [
        "gridrun logs ID                     # both streams, in the order written",
        "gridrun logs -t --tail 20 ID        # the last 20 lines, with their times",
        "gridrun logs -f --tail 5 ID         # from the last 5 lines, then live",
        "gridrun logs ID --stream stderr",
        "gridrun logs JOB --index 17         # one index of an array",
    ],
    "cancel": ["gridrun cancel ID", "gridrun cancel --job JOB", "gridrun cancel --queue nightly"],
    "wait": ["gridrun wait ID JOB --timeout 1h  # exit 0 if all succeeded"],
    "top": ["gridrun top", "gridrun top --json --once | jq .tasks"],
    "workers": ["gridrun workers", "gridrun drain WORKER_ID"],
    "add": [
        "gridrun alloc add slurm --name cpu --time-limit 1h --max-workers 8 -- -p batch",
        "gridrun alloc add slurm --name gpu --time-limit 4h -l gpu=1 -- --gres=gpu:1",
    ],
    "dry-run": ["gridrun alloc dry-run slurm --time-limit 1h -- -p batch -A myproj"],
    "info": ["gridrun alloc info cpu   # its allocations, Slurm job ids, errors"],
}


def add_examples(command: Any) -> None:
    """Give each command listed its Examples (kept as written: click rewraps paragraphs
    unless they begin with \\b)."""
    for name, sub in getattr(command, "commands", {}).items():
        lines = EXAMPLES.get(name)
        if lines and sub.epilog is None:
            sub.epilog = "\b\nExamples:\n" + "\n".join("  " + line for line in lines)
