"""`gridrun token create` and `gridrun certs init|issue`: the credentials a secure grid needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from gridrun.cli.common import app, err, fail, guard

token_app = typer.Typer(help="API and join tokens.", no_args_is_help=True)
certs_app = typer.Typer(help="A private CA and the grid's TLS certificates.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(certs_app, name="certs")

CertDir = Annotated[
    Path, typer.Option("--dir", envvar="GRIDRUN_CERTS_DIR", help="Where the CA and certs live.")
]


@token_app.command("create")
def token_create(
    role: Annotated[
        str,
        typer.Option(
            help="admin (everything), submit (submit, read, cancel own), read, or worker (a"
            " join token for workers)."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Who holds it; shown as submitted_by and in the audit log."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Append the token's hash to this master config file (made 0600)."),
    ] = None,
) -> None:
    """Print a new token once (stdout) and what the master needs to accept it (its hash)."""
    from gridrun.auth import Role, TokenEntry, digest, new_token, toml_entry
    from gridrun.cli import master_file

    with guard:
        token = new_token()
        try:
            chosen = Role(role)
        except ValueError:
            fail(f"--role must be one of {', '.join(r.value for r in Role)}, not {role!r}")
        entry = TokenEntry.of(name or f"{chosen}-{digest(token)[7:15]}", chosen, digest(token))
        snippet = toml_entry(entry.name, entry.role, entry.digest)
        if config is not None:
            if config.exists():
                existing = master_file.load(config).get("tokens", [])
                if any(isinstance(t, dict) and t.get("name") == entry.name for t in existing):
                    fail(f"{config} already has a token named {entry.name!r}")
            fd = os.open(config, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(snippet)
            os.chmod(config, 0o600)
            master_file.load(config)  # still valid TOML
            err.print(f"added token {entry.name!r} ({entry.role}) to {config}; restart the master")
        else:
            # plain writes: these lines are copied, so they must not be wrapped
            sys.stderr.write(f"add this to the master's config file:\n{snippet}\n")
            sys.stderr.write(f"or to GRIDRUN_TOKENS: {entry.name}:{entry.role}:{entry.digest}\n")
        sys.stderr.write("the token (shown once; the master keeps only its hash):\n")
        sys.stderr.flush()
        sys.stdout.write(token + "\n")


@certs_app.command("init")
def certs_init(
    directory: CertDir = Path("gridrun-certs"),
    force: Annotated[bool, typer.Option(help="Replace an existing CA.")] = False,
) -> None:
    """Create the grid's CA (ca.crt to share, ca.key to keep safe)."""
    from gridrun.certs import init_ca

    with guard:
        issued = init_ca(directory, force=force)
        sys.stdout.write(f"{issued.cert}\n{issued.key}\n")


@certs_app.command("issue")
def certs_issue(
    worker: Annotated[
        str | None, typer.Option(help="A worker certificate; the name is the worker's id.")
    ] = None,
    master: Annotated[
        list[str] | None,
        typer.Option(
            help="A master certificate for this host name or address; repeat for each name"
            " clients and workers dial."
        ),
    ] = None,
    directory: CertDir = Path("gridrun-certs"),
) -> None:
    """Issue a certificate signed by the grid's CA (prints the certificate and key paths)."""
    from gridrun.certs import issue_master, issue_worker

    with guard:
        if (worker is None) == (not master):
            fail("give --worker NAME or --master HOST (one of them)")
        issued = (
            issue_worker(directory, worker) if worker else issue_master(directory, master or [])
        )
        sys.stdout.write(f"{issued.cert}\n{issued.key}\n")
