"""The stored form of a spec: every spec reads back as itself, and the full form that earlier
versions wrote still reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gridrun.model import Placement, RetryPolicy, TaskSpec
from gridrun.resources import Op, Resources, Term
from gridrun.store.rows import spec_from_json, spec_to_json

text = st.text(max_size=8)
maybe_text = st.none() | text
maybe_float = st.none() | st.floats(min_value=0.001, max_value=1e6)
specs = st.builds(
    TaskSpec,
    argv=st.lists(text, min_size=1, max_size=3).map(tuple),
    cmd=maybe_text,
    shell=st.booleans(),
    env=st.dictionaries(text, text, max_size=2),
    cwd=maybe_text,
    timeout_s=maybe_float,
    priority=st.integers(-5, 5),
    labels=st.dictionaries(text, text, max_size=2),
    name=maybe_text,  # "" included: it must not read back as None
    retry=st.builds(
        RetryPolicy,
        max_attempts=st.integers(1, 3),
        initial_s=st.sampled_from([0.0, 1.0, 2.5]),
        factor=st.sampled_from([1.0, 2.0]),
        max_s=st.sampled_from([0.0, 60.0]),
        on_exit_codes=st.none() | st.lists(st.integers(0, 255), max_size=2).map(tuple),
    ),
    queue_timeout_s=maybe_float,
    idempotency_key=maybe_text,
    submitted_by=maybe_text,
    selector=st.lists(
        st.builds(Term, key=text, op=st.sampled_from(list(Op)), values=st.tuples(text)),
        max_size=2,
    ).map(tuple),
    resources=st.builds(
        Resources,
        cpu=st.sampled_from([0.0, 0.5, 2.0]),
        memory_mb=st.integers(0, 4),
        gpus=st.integers(0, 2),
    ),
    after=st.lists(text, max_size=2).map(tuple),
    worker=maybe_text,
    job=maybe_text,
    task_class=maybe_text,
    placement=st.sampled_from(Placement),
)


@given(specs)
def test_every_spec_reads_back_as_itself(spec: TaskSpec) -> None:
    assert spec_from_json(spec_to_json(spec)) == spec


def test_a_plain_spec_is_stored_small() -> None:
    stored = spec_to_json(TaskSpec(argv=("true",), submitted_by="ci"))
    assert stored == '{"argv":["true"],"submitted_by":"ci"}'


def test_the_full_form_of_earlier_versions_still_reads() -> None:
    full = (
        '{"argv":["sh","-c","echo hi"],"cmd":"echo hi","shell":true,"env":{"A":"1"},'
        '"cwd":null,"timeout_s":5.0,"priority":3,"labels":{"zone":"b"},"name":"n",'
        '"retry":{"max_attempts":2,"initial_s":1.0,"factor":2.0,"max_s":60.0,'
        '"on_exit_codes":null},"queue_timeout_s":null,"idempotency_key":null,'
        '"submitted_by":"ci","selector":[["gpu","exists",[]]],'
        '"resources":{"cpu":0.0,"memory_mb":0,"gpus":0},"after":[],"worker":null,"job":null,'
        '"class":null,"pack":false}'
    )
    assert spec_from_json(full) == TaskSpec(
        argv=("sh", "-c", "echo hi"),
        cmd="echo hi",
        shell=True,
        env={"A": "1"},
        timeout_s=5.0,
        priority=3,
        labels={"zone": "b"},
        name="n",
        retry=RetryPolicy(max_attempts=2),
        submitted_by="ci",
        selector=(Term("gpu", Op.EXISTS),),
    )
