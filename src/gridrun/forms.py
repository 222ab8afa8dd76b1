"""How users write values on a command line, in a variable or a config file: k=v labels,
CLASS=N and OWNER=W pairs, durations (30s, 5m, 12h, 14d), sizes (500MiB, 10GiB) and host:port
addresses. Each reader raises InvalidSpec (or ValueError for an address) naming what it read."""

from __future__ import annotations

import re
from collections.abc import Sequence

from gridrun.errors import InvalidSpec
from gridrun.spec import check_name


def parse_labels(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse ``k=v`` strings (CLI --label / --on) into a mapping."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidSpec(f"label {item!r} must look like key=value")
        labels[key.strip()] = value.strip()
    return labels


def parse_max_tasks(items: Sequence[str]) -> dict[str, int]:
    """Parse ``class=N`` strings (worker --max-tasks) into a mapping."""
    limits: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not name.strip() or not count.strip().isdigit():
            raise InvalidSpec(f"--max-tasks {item!r} must look like CLASS=N (N a number)")
        limits[name.strip()] = int(count)
    return limits


def parse_shares(items: Sequence[str]) -> dict[str, float]:
    """Parse ``OWNER=W`` strings (master --share) into a mapping of positive weights."""
    shares: dict[str, float] = {}
    for item in items:
        name, sep, weight = item.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = 0.0
        if not sep or not name.strip() or not 0 < value <= 1_000_000:
            raise InvalidSpec(f"--share {item!r} must look like OWNER=W (W a number above 0)")
        shares[name.strip()] = value
    return shares


DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds from `30s`, `5m`, `12h`, `14d` (or a bare number of seconds)."""
    match = DURATION.fullmatch(text)
    if match is None:
        raise InvalidSpec(f"{what} {text!r}: give a number and a unit, e.g. 30s, 5m, 12h, 14d")
    return float(match.group(1)) * UNIT_S[match.group(2)]


SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from `10GiB`, `500MiB`, `64k`, `1G` (binary units) or a bare number of bytes."""
    match = SIZE.fullmatch(text)
    if match is None:
        raise InvalidSpec(f"{what} {text!r}: give a number and a unit, e.g. 500MiB, 10GiB")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def parse_retain_queues(items: Sequence[str]) -> dict[str, float]:
    """Parse ``QUEUE=D`` strings (master --retain-queue) into seconds by queue."""
    retains: dict[str, float] = {}
    for item in items:
        queue, sep, duration = item.partition("=")
        if not sep:
            raise InvalidSpec(f"--retain-queue {item!r} must look like QUEUE=D, e.g. nightly=90d")
        check_name("queue", queue.strip())
        retains[queue.strip()] = parse_duration(duration, f"--retain-queue {queue.strip()}")
    return retains


def split_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); raise ValueError with a readable message."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)
