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


def read(path: Path, settable: set[str]) -> tuple[dict[str, Any], list[TokenEntry]]:
    """The file's settings (by name) and its tokens; an unknown name is an error."""
    data = load(path)
    tokens = parse_toml_tokens(data.pop("tokens", []))
    unknown = sorted(set(data) - settable)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(settable))}, tokens"
        )
    return data, tokens
