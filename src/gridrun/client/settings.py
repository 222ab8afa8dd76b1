"""Where a client finds the master, its token and the CA that signed the master's certificate:
arguments first, then GRIDRUN_URL / GRIDRUN_TOKEN / GRIDRUN_CA, then the config file
($GRIDRUN_CONFIG, else $XDG_CONFIG_HOME/gridrun/config.toml, else ~/.config/gridrun/config.toml):

    url = "https://grid.example.com:9092"
    token = "grt_..."
    ca = "/etc/gridrun/ca.crt"
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gridrun.errors import ClientError

DEFAULT_URL = "http://127.0.0.1:9092"
KEYS = ("url", "token", "ca")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    url: str = DEFAULT_URL
    token: str | None = None
    ca: Path | None = None
    warnings: tuple[str, ...] = ()


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("GRIDRUN_CONFIG"):
        return Path(environ["GRIDRUN_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gridrun" / "config.toml"


def read_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """The file's settings (empty if there is no file) and warnings about it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ClientError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: url, token, ca")
    if not all(isinstance(v, str) for v in data.values()):
        raise ClientError(f"{path}: url, token and ca are strings")
    warnings = []
    if "token" in data and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{path} holds a token and others can read it; chmod 600 {path}")
    return data, warnings


def resolve(
    url: str | None = None,
    token: str | None = None,
    ca: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    env = os.environ if environ is None else environ
    given = {"url": url, "token": token, "ca": str(ca) if ca is not None else None}
    chosen: dict[str, str | None] = {}
    for key in KEYS:
        chosen[key] = given[key] or env.get(f"GRIDRUN_{key.upper()}") or None
    warnings: list[str] = []
    if any(chosen[key] is None for key in KEYS):
        from_file, warnings = read_config(config_path(env))
        for key in KEYS:
            chosen[key] = chosen[key] or from_file.get(key)
    return ClientSettings(
        url=(chosen["url"] or DEFAULT_URL).rstrip("/"),
        token=chosen["token"],
        ca=Path(chosen["ca"]) if chosen["ca"] else None,
        warnings=tuple(warnings),
    )
