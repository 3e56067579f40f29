"""Scheduling logic of the executor, in isolation: what is in flight at once, and error
isolation. The backend here is a stand-in that only counts concurrent requests; everything
that touches generation is tested on the real engine in test_e2e.py."""

from __future__ import annotations

import asyncio

from nanolang.check.checker import check_or_raise
from nanolang.run.executor import Executor
from nanolang.run.records import InstanceState
from nanolang.syntax.parser import parse
from tests.nanolang.helpers import CountingBackend


def _executor(source: str) -> tuple[Executor, CountingBackend]:
    module = parse(source, "s.nano")
    check_or_raise(module)
    backend = CountingBackend()
    return Executor(module, backend), backend


def test_independent_calls_run_at_the_same_time() -> None:
    executor, backend = _executor(
        "program p() { let a = call q(x = 1) let b = call q(x = 2) let c = call q(x = 3) "
        "return [a, b, c] }\nprogram q(x) { gen y return y }"
    )
    outcome = asyncio.run(executor.run("p", {}))
    assert outcome.value == ["ok", "ok", "ok"]
    assert backend.peak == 3


def test_an_executor_runs_the_same_index_again() -> None:
    executor, _ = _executor("program p() { gen a return a }")
    assert asyncio.run(executor.run("p", {})).value == "ok"
    assert asyncio.run(executor.run("p", {})).value == "ok"
    assert executor.states == {0: InstanceState.FINISHED}


def test_dependent_call_waits_for_its_input() -> None:
    executor, backend = _executor(
        "program p() { let a = call q(x = 1) let b = call q(x = a) return b }\n"
        "program q(x) { gen y return y }"
    )
    assert asyncio.run(executor.run("p", {})).value == "ok"
    assert backend.peak == 1 and backend.count == 2


def test_fork_branches_run_in_parallel_and_keep_order() -> None:
    executor, backend = _executor("program p() { fork 5 { gen a gen b } return [a, b] }")
    outcome = asyncio.run(executor.run("p", {}))
    assert outcome.value == [["ok"] * 5, ["ok"] * 5]
    assert backend.peak == 5 and backend.count == 10


def test_instances_are_submitted_together() -> None:
    executor, backend = _executor("program p(i) { gen a return i }")
    outcomes = asyncio.run(executor.run_many([("p", {"i": i}) for i in range(50)]))
    assert [o.value for o in outcomes] == list(range(50))
    assert backend.peak == 50


def test_thousands_of_instances_on_one_event_loop() -> None:
    executor, backend = _executor("program p(i) { fork 2 { gen a } return len(a) + i }")
    outcomes = asyncio.run(executor.run_many([("p", {"i": i}) for i in range(2000)]))
    assert [o.value for o in outcomes] == [2 + i for i in range(2000)]
    # the default max_concurrency (1024 instances) bounds what is in flight: 2 calls each
    assert backend.count == 4000 and backend.peak == 2048


def test_max_concurrency_limits_instances() -> None:
    module = parse("program p() { gen a }")
    backend = CountingBackend()
    executor = Executor(module, backend, max_concurrency=4)
    asyncio.run(executor.run_many([("p", {})] * 20))
    assert backend.peak == 4


def test_a_failing_instance_does_not_stop_the_others() -> None:
    executor, _ = _executor("program p(v) {\n    gen a\n    return int(v)\n}")
    outcomes = asyncio.run(
        executor.run_many([("p", {"v": "1"}), ("p", {"v": "x"}), ("p", {"v": "3"})])
    )
    assert [o.value for o in outcomes] == [1, None, 3]
    assert executor.counts()[InstanceState.FAILED] == 1
    assert executor.counts()[InstanceState.FINISHED] == 2
    error = outcomes[1].error
    assert error is not None and "int() cannot parse 'x'" in error.message
    assert error.format().startswith("s.nano:3:12: runtime error:")


def test_an_unused_failing_call_still_fails_its_instance() -> None:
    executor, _ = _executor(
        'program p() { let a = call q(v = "x") return 1 }\nprogram q(v) { return int(v) }'
    )
    outcome = asyncio.run(executor.run("p", {}))
    assert outcome.error is not None and "int()" in outcome.error.message
