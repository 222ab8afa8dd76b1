from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_EXITED: _ClassVar[Outcome]
    OUTCOME_TIMED_OUT: _ClassVar[Outcome]
    OUTCOME_CANCELLED: _ClassVar[Outcome]
    OUTCOME_SPAWN_FAILED: _ClassVar[Outcome]
    OUTCOME_NO_SLOT: _ClassVar[Outcome]
    OUTCOME_WORKER_STOPPED: _ClassVar[Outcome]
    OUTCOME_REJECTED: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_EXITED: Outcome
OUTCOME_TIMED_OUT: Outcome
OUTCOME_CANCELLED: Outcome
OUTCOME_SPAWN_FAILED: Outcome
OUTCOME_NO_SLOT: Outcome
OUTCOME_WORKER_STOPPED: Outcome
OUTCOME_REJECTED: Outcome

class FetchRequest(_message.Message):
    __slots__ = ("ticket", "ref", "digest", "offset")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    ref: AttemptRef
    digest: str
    offset: int
    def __init__(self, ticket: _Optional[str] = ..., ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., digest: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class CollectMessage(_message.Message):
    __slots__ = ("head", "data", "end")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    head: CollectHead
    data: bytes
    end: CollectEnd
    def __init__(self, head: _Optional[_Union[CollectHead, _Mapping]] = ..., data: _Optional[bytes] = ..., end: _Optional[_Union[CollectEnd, _Mapping]] = ...) -> None: ...

class CollectHead(_message.Message):
    __slots__ = ("ticket", "ref", "path", "size", "mode", "dropped", "reason")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    ref: AttemptRef
    path: str
    size: int
    mode: int
    dropped: bool
    reason: str
    def __init__(self, ticket: _Optional[str] = ..., ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., path: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., dropped: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class CollectEnd(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

class CollectReply(_message.Message):
    __slots__ = ("stored_bytes",)
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    stored_bytes: int
    def __init__(self, stored_bytes: _Optional[int] = ...) -> None: ...

class AttemptRef(_message.Message):
    __slots__ = ("task_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpus", "memory_mb", "gpus")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    cpus: int
    memory_mb: int
    gpus: int
    def __init__(self, cpus: _Optional[int] = ..., memory_mb: _Optional[int] = ..., gpus: _Optional[int] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "started", "output", "finished", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    started: Started
    output: Output
    finished: Finished
    batch: WorkerBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., output: _Optional[_Union[Output, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., batch: _Optional[_Union[WorkerBatch, _Mapping]] = ...) -> None: ...

class WorkerBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[WorkerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[WorkerMessage, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("worker_id", "hostname", "labels", "slots", "resources", "version", "running", "unacked", "max_tasks", "resumed", "identity_secret", "binds_identity", "containment", "batches", "announces_starts", "prefetch", "takes_stdin", "takes_script", "time_left_ms", "takes_files")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MaxTasksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    UNACKED_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_SECRET_FIELD_NUMBER: _ClassVar[int]
    BINDS_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CONTAINMENT_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCES_STARTS_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    TAKES_STDIN_FIELD_NUMBER: _ClassVar[int]
    TAKES_SCRIPT_FIELD_NUMBER: _ClassVar[int]
    TIME_LEFT_MS_FIELD_NUMBER: _ClassVar[int]
    TAKES_FILES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    hostname: str
    labels: _containers.ScalarMap[str, str]
    slots: int
    resources: Resources
    version: str
    running: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    unacked: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    max_tasks: _containers.ScalarMap[str, int]
    resumed: bool
    identity_secret: str
    binds_identity: bool
    containment: str
    batches: bool
    announces_starts: bool
    prefetch: int
    takes_stdin: bool
    takes_script: bool
    time_left_ms: int
    takes_files: bool
    def __init__(self, worker_id: _Optional[str] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., slots: _Optional[int] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., version: _Optional[str] = ..., running: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ..., unacked: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ..., max_tasks: _Optional[_Mapping[str, int]] = ..., resumed: _Optional[bool] = ..., identity_secret: _Optional[str] = ..., binds_identity: _Optional[bool] = ..., containment: _Optional[str] = ..., batches: _Optional[bool] = ..., announces_starts: _Optional[bool] = ..., prefetch: _Optional[int] = ..., takes_stdin: _Optional[bool] = ..., takes_script: _Optional[bool] = ..., time_left_ms: _Optional[int] = ..., takes_files: _Optional[bool] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("free_slots", "running", "draining")
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    free_slots: int
    running: int
    draining: bool
    def __init__(self, free_slots: _Optional[int] = ..., running: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("ref", "started_at_ms", "pid")
    REF_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    ref: AttemptRef
    started_at_ms: int
    pid: int
    def __init__(self, ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., started_at_ms: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("ref", "stdout_offset", "stdout", "stderr_offset", "stderr", "written_at_ms")
    REF_FIELD_NUMBER: _ClassVar[int]
    STDOUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ref: AttemptRef
    stdout_offset: int
    stdout: bytes
    stderr_offset: int
    stderr: bytes
    written_at_ms: int
    def __init__(self, ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., stdout_offset: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr_offset: _Optional[int] = ..., stderr: _Optional[bytes] = ..., written_at_ms: _Optional[int] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("ref", "outcome", "has_exit_code", "exit_code", "signal", "started_at_ms", "finished_at_ms", "error", "stdout_bytes", "stderr_bytes", "usage")
    REF_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_BYTES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ref: AttemptRef
    outcome: Outcome
    has_exit_code: bool
    exit_code: int
    signal: int
    started_at_ms: int
    finished_at_ms: int
    error: str
    stdout_bytes: int
    stderr_bytes: int
    usage: Usage
    def __init__(self, ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., error: _Optional[str] = ..., stdout_bytes: _Optional[int] = ..., stderr_bytes: _Optional[int] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("cpu_s", "peak_memory_bytes", "io_read_bytes", "io_write_bytes")
    CPU_S_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    IO_READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    IO_WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_s: float
    peak_memory_bytes: int
    io_read_bytes: int
    io_write_bytes: int
    def __init__(self, cpu_s: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., io_read_bytes: _Optional[int] = ..., io_write_bytes: _Optional[int] = ...) -> None: ...

class MasterMessage(_message.Message):
    __slots__ = ("welcome", "assign", "cancel", "ack", "drain", "batch", "revoke")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign: Assign
    cancel: Cancel
    ack: Ack
    drain: Drain
    batch: MasterBatch
    revoke: Revoke
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., batch: _Optional[_Union[MasterBatch, _Mapping]] = ..., revoke: _Optional[_Union[Revoke, _Mapping]] = ...) -> None: ...

class MasterBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[MasterMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[MasterMessage, _Mapping]]] = ...) -> None: ...

class Revoke(_message.Message):
    __slots__ = ("ref", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: AttemptRef
    reason: str
    def __init__(self, ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_ms", "output_cap_bytes", "identity_secret", "batches")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CAP_BYTES_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_SECRET_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_ms: int
    output_cap_bytes: int
    identity_secret: str
    batches: bool
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., output_cap_bytes: _Optional[int] = ..., identity_secret: _Optional[str] = ..., batches: _Optional[bool] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("ref", "argv", "shell", "env", "cwd", "timeout_ms", "kill_grace_ms", "gpus", "secret_env", "cpu", "memory_mb", "stdin", "script", "inputs", "collect", "collect_budget_bytes", "files_ticket")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    KILL_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    COLLECT_FIELD_NUMBER: _ClassVar[int]
    COLLECT_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_TICKET_FIELD_NUMBER: _ClassVar[int]
    ref: AttemptRef
    argv: _containers.RepeatedScalarFieldContainer[str]
    shell: bool
    env: _containers.ScalarMap[str, str]
    cwd: str
    timeout_ms: int
    kill_grace_ms: int
    gpus: int
    secret_env: _containers.ScalarMap[str, str]
    cpu: float
    memory_mb: int
    stdin: bytes
    script: bytes
    inputs: _containers.RepeatedCompositeFieldContainer[InputRef]
    collect: _containers.RepeatedScalarFieldContainer[str]
    collect_budget_bytes: int
    files_ticket: str
    def __init__(self, ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., argv: _Optional[_Iterable[str]] = ..., shell: _Optional[bool] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., kill_grace_ms: _Optional[int] = ..., gpus: _Optional[int] = ..., secret_env: _Optional[_Mapping[str, str]] = ..., cpu: _Optional[float] = ..., memory_mb: _Optional[int] = ..., stdin: _Optional[bytes] = ..., script: _Optional[bytes] = ..., inputs: _Optional[_Iterable[_Union[InputRef, _Mapping]]] = ..., collect: _Optional[_Iterable[str]] = ..., collect_budget_bytes: _Optional[int] = ..., files_ticket: _Optional[str] = ...) -> None: ...

class InputRef(_message.Message):
    __slots__ = ("name", "digest", "size", "mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: str
    size: int
    mode: int
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("ref", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: AttemptRef
    reason: str
    def __init__(self, ref: _Optional[_Union[AttemptRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    def __init__(self, refs: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
