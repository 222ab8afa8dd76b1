"""The master's config file (`gridrun master --config FILE`, TOML): the same settings as its
flags, by the flags' names with underscores, plus `[[tokens]]` tables. A flag or GRIDRUN_*
variable given explicitly wins over the file; the file wins over defaults.

    http = "0.0.0.0:9092"
    tls_cert = "certs/master.crt"
    tls_key = "certs/master.key"

    [[tokens]]
    name = "ci"
    role = "submit"
    hash = "sha256:..."
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer

from gridrun.auth import TokenEntry, parse_toml_tokens
from gridrun.errors import ConfigError


def load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def merge(
    ctx: typer.Context, given: dict[str, Any], path: Path | None
) -> tuple[dict[str, Any], list[TokenEntry]]:
    """The settings to use: each flag's value unless it was left at its default and the file
    sets it. Returns them with the file's tokens."""
    if path is None:
        return given, []
    data = load(path)
    tokens = parse_toml_tokens(data.pop("tokens", []))
    settable = set(given) - {"config", "log_level", "log_format", "tokens"}
    unknown = sorted(set(data) - settable)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(settable))}, tokens"
        )
    merged = dict(given)
    for key, value in data.items():
        source = ctx.get_parameter_source(key)
        if source is None or source.name == "DEFAULT":
            merged[key] = value
    return merged, tokens
