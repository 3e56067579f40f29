"""Instances hand the runtime graph nodes: what each request carries, and what the real engine
does with it (pins, groups, release at the end)."""

from __future__ import annotations

import asyncio
from typing import Any

from nanolang.api.program import compile
from nanolang.backends.local import LocalBackend
from nanolang.check.checker import check_or_raise
from nanolang.run.executor import Executor
from nanolang.syntax.parser import parse
from runtime.outputs import RequestOutput
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams
from tests.nanolang.helpers import CountingBackend


class RecordingBackend(CountingBackend):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[list[int], ProgramRef]] = []
        self.ended: list[int] = []

    async def generate_node(
        self, prompt_ids: list[int], params: SamplingParams, node: ProgramRef
    ) -> RequestOutput:
        self.sent.append((list(prompt_ids), node))
        out = await self.generate(prompt_ids, params)
        if params.prompt_logprobs:
            out.prompt_logprobs = [None] + [-1.0] * (len(prompt_ids) - 1)
        return out

    def end_instance(self, instance: int) -> None:
        self.ended.append(instance)


def run(source: str, backend: Any, graph: bool = True) -> Any:
    module = parse(source, "g.nano")
    check_or_raise(module)
    return asyncio.run(Executor(module, backend, graph=graph).run("p", {}))


def test_each_request_extends_its_parents_exact_tokens() -> None:
    backend = RecordingBackend()
    outcome = run('program p() { "Q: " gen a " and " gen b return b }', backend)
    assert outcome.ok
    (first, ref_a), (second, ref_b) = backend.sent
    assert ref_a.parent is None and ref_a.pin
    assert ref_b.parent == ref_a.node and ref_b.unpin == (ref_a.node,)
    assert not ref_b.pin  # the last request: no child will extend it
    assert second[: len(first) + 2] == [*first, ord("o"), ord("k")]  # "ok", as generated
    assert backend.ended == [ref_a.instance]


def test_fork_siblings_are_one_group_and_the_parent_is_released_by_the_last_holder() -> None:
    backend = RecordingBackend()
    outcome = run('program p() { gen a fork 3 { "x" gen b } "y" gen c return c }', backend)
    assert outcome.ok
    refs = [r for _, r in backend.sent]
    a, branches, c = refs[0], refs[1:4], refs[4]
    assert {r.group for r in branches} == {branches[0].group} and branches[0].group is not None
    assert all(r.parent == a.node and r.unpin == () for r in branches)
    assert c.parent == a.node and c.unpin == (a.node,)  # the post-join context held it last
    kinds = [n.kind for n in outcome.nodes]
    assert kinds.count("fork") == 1 and kinds.count("gen") == 5


def test_select_is_one_node_with_its_alternatives() -> None:
    backend = RecordingBackend()
    source = 'program p() { "Pick: " select s from ["ab", "cd", "ef"] gen t return s }'
    outcome = run(source, backend)
    assert outcome.ok
    refs = [r for _, r in backend.sent]
    assert len({r.node for r in refs[:3]}) == 1 and refs[0].group == refs[0].node
    select_node = next(n for n in outcome.nodes if n.kind == "select")
    assert select_node.alternatives == (2, 2, 2)
    assert refs[3].parent == select_node.id


def test_independent_mode_sends_no_nodes() -> None:
    backend = RecordingBackend()
    assert run("program p() { gen a gen b return b }", backend, graph=False).ok
    assert backend.sent == [] and backend.count == 2 and backend.ended == []


def test_the_engine_admits_forks_together_and_releases_pins_at_the_end(
    backend: LocalBackend,
) -> None:
    engine = backend.llm.engine
    stats = engine.scheduler.instances.stats
    groups, pins = stats.groups_admitted, stats.pins_made
    program = compile(
        'program p() { "A long shared question about many things, " gen a(max_tokens = 4) '
        'fork 4 { " branch " gen b(max_tokens = 4) } return b }'
    )
    value = program.run(backend=backend, seed=1)
    assert len(value) == 4
    assert stats.groups_admitted > groups and stats.pins_made > pins
    for _ in range(100):  # the end-of-instance release is queued behind the last output
        if stats.pinned_blocks == 0:
            break
        asyncio.run(asyncio.sleep(0.01))
    assert stats.pinned_blocks == 0
    assert not engine.scheduler.instances.instances


def test_a_program_larger_than_the_kv_cache_is_refused_before_it_starts(
    backend: LocalBackend,
) -> None:
    capacity = backend.kv_capacity_tokens
    program = compile(
        "program p(n) { \"Q\" fork n { gen a(max_tokens = 100) } return a }\n"
        "program q() { gen b(max_tokens = 2) return b }"
    )
    engine = backend.llm.engine
    before = engine.stats.num_finished
    outcomes = program.run_batch_outcomes(
        [{"n": capacity // 100 + 1}, {"n": 2}], progress=False, backend=backend, seed=0
    )
    assert outcomes[0].error is not None and outcomes[1].ok
    message = str(outcomes[0].error)
    assert "KV cache holds" in message and str(capacity) in message
    assert outcomes[0].calls == ()  # nothing was sent for it
    assert engine.stats.num_finished == before + 2  # the other instance ran its two branches


class GatedBackend(RecordingBackend):
    """Holds the second fork branch's request until some pin is released."""

    def __init__(self) -> None:
        super().__init__()
        self.unpinned: list[tuple[int, ...]] = []
        self.released = asyncio.Event()

    async def generate_node(
        self, prompt_ids: list[int], params: SamplingParams, node: ProgramRef
    ) -> RequestOutput:
        if len(self.sent) == 1:  # the second branch: answered only after the first one's unpin
            self.sent.append((list(prompt_ids), node))
            await asyncio.wait_for(self.released.wait(), timeout=5)
            return await self.generate(prompt_ids, params)
        return await super().generate_node(prompt_ids, params, node)

    def unpin(self, instance: int, nodes: tuple[int, ...]) -> None:
        self.unpinned.append(nodes)
        self.released.set()


def test_a_finished_fork_branch_releases_its_last_node_before_its_siblings_finish() -> None:
    backend = GatedBackend()
    # in a loop, a request is pinned (the next iteration may extend it)
    outcome = run('program p() { "Q" fork 2 { for i in [1] { " x" gen b } } return b }', backend)
    assert outcome.ok, outcome.error
    first = backend.sent[0][1]
    assert first.pin
    assert backend.unpinned[0] == (first.node,)  # while the second branch still waited


def test_leaf_requests_are_sent_without_a_pin_and_never_unpinned() -> None:
    backend = RecordingBackend()
    outcome = run('program p() { "Q" fork 2 { " x" gen b " y" gen c } return c }', backend)
    assert outcome.ok, outcome.error
    refs = [r for _, r in backend.sent]
    b_refs = [r for r in refs if r.unpin == ()]
    c_refs = [r for r in refs if r.unpin != ()]
    assert len(b_refs) == len(c_refs) == 2
    assert all(r.pin for r in b_refs) and not any(r.pin for r in c_refs)
    assert sorted(r.unpin for r in c_refs) == sorted((r.node,) for r in b_refs)


def test_the_engine_pins_only_nodes_a_request_may_extend(backend: LocalBackend) -> None:
    stats = backend.llm.engine.scheduler.instances.stats
    pins = stats.pins_made
    program = compile(
        'program p() { "A long shared question about many things, " fork 3 { " step" '
        "gen a(max_tokens = 2) "
        '" so" gen b(max_tokens = 2) } return b }'
    )
    assert len(program.run(backend=backend, seed=1)) == 3
    assert stats.pins_made - pins == 3  # each branch's a; the b's are leaves


class SizedBackend(RecordingBackend):
    @property
    def kv_capacity_tokens(self) -> int:
        return 10_000


def test_every_node_carries_the_instances_estimated_peak() -> None:
    from nanolang.run.footprint import footprint
    from nanolang.run.token_cache import TokenCache

    source = 'program p() { "Q" fork 2 { " x" gen b(max_tokens = 5) } return b }'
    backend = SizedBackend()
    assert run(source, backend).ok
    module = parse(source, "g.nano")
    definition = module.get("p")
    assert definition is not None
    peak = footprint(module, definition, {}, backend.tokenizer, TokenCache(backend.tokenizer))
    assert [r.peak_tokens for _, r in backend.sent] == [peak.tokens] * 2
    plain = RecordingBackend()  # no KV cache to check against: no estimate
    assert run(source, plain).ok
    assert [r.peak_tokens for _, r in plain.sent] == [None, None]
