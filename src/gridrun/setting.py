"""A process's settings declared once: each field of its pydantic settings object carries the
name users give it (the flag `--NAME`, the variable `GRIDRUN_NAME`, and for a master the config
file's key `NAME`), its help, and how its text is read (seconds as 30s/5m/14d, sizes as 10GiB,
k=v pairs, host:port). The CLI makes a command's options from these fields
(`gridrun.cli.settings_command`); `MasterConfig` (gridrun.master.settings) and `WorkerConfig`
(gridrun.worker.config) are declared so. No default is written twice."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from gridrun.forms import (
    parse_duration,
    parse_labels,
    parse_max_tasks,
    parse_retain_queues,
    parse_shares,
    parse_size,
    split_address,
)


class Form(enum.Enum):
    """How a setting's text (a flag, a variable, a config file's string) is read."""

    AS_IS = "as is"  # the field's own type (numbers, paths, true/false)
    SECONDS = "seconds"  # a duration: 30s, 5m, 12h, 14d, or a number of seconds
    SIZE = "size"  # 500MiB, 10GiB, or a number of bytes
    PAIRS_WEIGHT = "OWNER=W"  # repeatable: an owner's fair-share weight
    PAIRS_SECONDS = "QUEUE=D"  # repeatable: a queue's retention
    LIST = "list"  # repeatable text
    LABELS = "k=v"  # repeatable: a label
    CLASS_COUNTS = "CLASS=N"  # repeatable: at most N tasks of a class
    ADDRESS = "host:port"  # sets two fields: <field>_host and <field>_port


READERS: Mapping[Form, Callable[[Any, str], Any]] = {
    Form.SECONDS: lambda text, flag: parse_duration(str(text), flag),
    Form.SIZE: lambda text, flag: parse_size(str(text), flag),
    Form.PAIRS_WEIGHT: lambda items, flag: parse_shares(list(items)),
    Form.PAIRS_SECONDS: lambda items, flag: parse_retain_queues(list(items)),
    Form.LABELS: lambda items, flag: parse_labels(list(items)),
    Form.CLASS_COUNTS: lambda items, flag: parse_max_tasks(list(items)),
}
REPEATED = (Form.PAIRS_WEIGHT, Form.PAIRS_SECONDS, Form.LIST, Form.LABELS, Form.CLASS_COUNTS)


@dataclass(frozen=True, slots=True)
class Setting:
    """What users call a field and how they write it."""

    name: str  # the flag without its dashes, with underscores (also the file's key)
    form: Form
    help: str
    envvar: str  # GRIDRUN_...
    shown: str  # the default as a user would write it ("" for none)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def setting(
    default: Any,
    help: str,
    *,
    name: str,
    form: Form = Form.AS_IS,
    envvar: str | None = None,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
    **constraints: Any,
) -> Any:
    """A field of a settings object with what users call it (see Setting)."""
    about = Setting(
        name=name,
        form=form,
        help=help,
        envvar=envvar or "GRIDRUN_" + name.upper(),
        shown=shown if shown is not None else ("" if default in (None, [], {}) else str(default)),
    )
    said = {"name": about.name, "form": about.form.value, "envvar": about.envvar}
    extra: Any = {"setting": {**said, "shown": about.shown}}
    if factory is not None:  # (the default made anew, or read from the machine)
        return Field(
            default_factory=factory, description=help, json_schema_extra=extra, **constraints
        )
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def setting_of(field_info: Any) -> Setting | None:
    """The Setting a field was declared with (None: not set by name)."""
    extra = field_info.json_schema_extra
    said = extra.get("setting") if isinstance(extra, dict) else None
    if not isinstance(said, dict):
        return None
    return Setting(
        name=str(said["name"]),
        form=Form(said["form"]),
        help=field_info.description or "",
        envvar=str(said["envvar"]),
        shown=str(said["shown"]),
    )


def settings_of(model: type[BaseModel]) -> dict[str, Setting]:
    """Field name -> what users call it, for every field users set by name."""
    found = {}
    for name, info in model.model_fields.items():
        about = setting_of(info)
        if about is not None:
            found[name] = about
    return found


def from_user(model: type[BaseModel], given: Mapping[str, Any]) -> dict[str, Any]:
    """`model`'s fields from settings as users write them (keyed by Setting.name; text or the
    field's own type), each read by its form. Errors name the flag."""
    by_name = {about.name: (field, about) for field, about in settings_of(model).items()}
    fields: dict[str, Any] = {}
    for name, value in given.items():
        field, about = by_name[name]
        if about.form is Form.ADDRESS:
            prefix = field.removesuffix("_host")
            try:
                fields[prefix + "_host"], fields[prefix + "_port"] = split_address(str(value))
            except ValueError as exc:
                raise ValueError(f"{about.flag}: {exc}") from None
        elif about.form in READERS and value is not None:
            fields[field] = READERS[about.form](value, about.flag)
        elif about.form is Form.LIST:
            fields[field] = list(value or [])
        else:
            fields[field] = value
    return fields
