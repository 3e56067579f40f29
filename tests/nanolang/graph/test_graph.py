"""Request graphs: golden text, JSON and dot; structure of edges for fork, for, if and call."""

from __future__ import annotations

import json

import pytest

from nanolang.graph.builder import build_graph
from nanolang.graph.render import to_dot, to_json, to_json_text, to_text
from nanolang.graph.request_graph import Node, NodeKind
from nanolang.syntax.parser import parse
from tests.nanolang.helpers import PROGRAMS, golden


def _graph(name: str):
    return build_graph(parse((PROGRAMS / f"{name}.nano").read_text(), f"{name}.nano"))


@pytest.mark.parametrize("name", ["solve", "control"])
def test_golden_text(name: str) -> None:
    golden(f"{name}.graph.txt", to_text(_graph(name)))


@pytest.mark.parametrize("name", ["solve", "control"])
def test_golden_json(name: str) -> None:
    golden(f"{name}.graph.json", to_json_text(_graph(name)) + "\n")


def test_golden_dot() -> None:
    golden("solve.graph.dot", to_dot(_graph("solve")))


def test_json_matches_nodes() -> None:
    graph = _graph("solve")
    data = json.loads(to_json_text(graph))
    assert [n["id"] for p in data["programs"] for n in p["nodes"]] == [n.id for n in graph.nodes]
    assert to_json(graph) == data


def test_fork_branches_share_the_fork_prefix() -> None:
    nodes = {n.id: n for n in _graph("solve").nodes}
    fork = next(n for n in nodes.values() if n.kind is NodeKind.FORK)
    thought = next(n for n in nodes.values() if n.kind is NodeKind.GEN and n.label == "thought")
    score = next(n for n in nodes.values() if n.kind is NodeKind.GEN and n.label == "score")
    assert thought.contexts == (fork.id,)
    assert score.contexts == (thought.id,)
    assert thought.scope == ("fork n",)
    assert fork.prompt[0].role == "user"


def test_call_has_fresh_context_and_data_edges() -> None:
    nodes = _graph("solve").nodes
    call = next(n for n in nodes if n.kind is NodeKind.CALL)
    join = next(n for n in nodes if n.kind is NodeKind.JOIN)
    assert call.contexts == ()
    assert call.data == (join.id,)
    ret = next(n for n in nodes if n.kind is NodeKind.RETURN and n.label.startswith("{ best"))
    assert call.id in ret.data and join.id in ret.data


def test_if_merges_both_branch_contexts() -> None:
    graph = build_graph(parse("program p(c) { if c { gen a } else { gen b } gen z }"))
    nodes = graph.nodes
    ends = [n.id for n in nodes if n.kind is NodeKind.JOIN]
    z = next(n for n in nodes if n.label == "z")
    assert z.contexts == tuple(ends)


def test_dot_has_one_edge_per_dependency() -> None:
    graph = _graph("solve")
    dot = to_dot(graph)
    edges = sum(len(n.contexts) + len(n.data) for n in graph.nodes)
    assert dot.count("->") == edges
    assert dot.startswith("digraph nanolang {") and dot.rstrip().endswith("}")


def _nodes(source: str) -> dict[str, list[Node]]:
    by_kind: dict[str, list[Node]] = {}
    for node in build_graph(parse(source)).nodes:
        by_kind.setdefault(node.kind.value, []).append(node)
    return by_kind


def test_after_a_concat_fork_the_context_goes_on_from_its_join() -> None:
    source = (
        'program p(xs) { fork len(xs) as i concat { "{xs[i]}\\n" } gen a fork 2 { gen b } gen c }'
    )
    nodes = _nodes(source)
    (concat_fork, plain_fork), (concat_join, _) = nodes["fork"], nodes["join"]
    a, _, c = nodes["gen"]
    assert a.contexts == (concat_join.id,)  # the branches' text is in a's prompt
    assert c.contexts == (plain_fork.id,)  # a plain fork's text does not leak
    assert concat_join.data == (nodes["start"][0].id, concat_fork.id)  # it reads xs and i


def test_text_in_if_branches_and_before_return_keeps_its_data_edges() -> None:
    source = (
        'program p(q) { let h = upper(q) if true { "yes {h}" } else { "no" } gen g "{h}" return g }'
    )
    nodes = _nodes(source)
    start = nodes["start"][0].id
    then_end, else_end = nodes["join"]
    assert then_end.data == (start,) and else_end.data == ()
    ret = nodes["return"][0]
    assert [p.text for p in ret.prompt] == ['"{h}"']
    assert ret.data == (start, nodes["gen"][0].id)
