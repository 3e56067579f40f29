"""Which requests are leaves of the request graph (sent without a pin)."""

from __future__ import annotations

from nanolang.run.leaves import leaf_requests
from nanolang.syntax import tree
from nanolang.syntax.parser import parse


def leaves(source: str, program: str = "p") -> set[str]:
    """The names of ``program``'s leaf gens and selects."""
    module = parse(source, "l.nano")
    definition = module.get(program)
    assert definition is not None
    found = leaf_requests(definition)
    return {s.name for s in _requests(definition.body) if id(s) in found}


def _requests(body: tuple[tree.Stmt, ...]) -> list[tree.Gen | tree.Select]:
    out: list[tree.Gen | tree.Select] = []
    for stmt in body:
        if isinstance(stmt, tree.Gen | tree.Select):
            out.append(stmt)
        elif isinstance(stmt, tree.If):
            out += _requests(stmt.then) + _requests(stmt.orelse)
        elif isinstance(stmt, tree.Role | tree.Capture | tree.Fork | tree.For | tree.While):
            out += _requests(stmt.body)
    return out


def test_the_last_request_of_a_program_is_the_only_leaf() -> None:
    assert leaves('program p() { "Q" gen a " more" gen b "tail" return b }') == {"b"}


def test_a_select_can_be_a_leaf() -> None:
    assert leaves('program p(c) { "Q" select s from c return s }') == {"s"}
    assert leaves('program p(c) { "Q" select s from c gen t return t }') == {"t"}


def test_a_fork_branch_ends_its_context_and_a_fork_with_requests_extends_the_parent() -> None:
    source = 'program p() { gen a fork 3 { "x" gen b "y" gen c } return c }'
    assert leaves(source) == {"c"}  # a: the branches extend it; b: c follows in the branch
    assert leaves('program p() { gen a fork 2 { "no request" } return a }') == {"a"}


def test_a_branch_stays_pinned_while_requests_follow_the_join() -> None:
    source = 'program p() { "Q" fork 2 { gen b } "verdict" gen v return v }'
    assert leaves(source) == {"v"}  # b's blocks hold the prefix v shares until b's branch ends
    assert leaves('program p() { "Q" fork 2 { gen b } "done" return b }') == {"b"}


def test_nothing_in_a_loop_is_a_leaf_and_a_loop_with_requests_follows_what_precedes_it() -> None:
    assert leaves("program p(xs) { gen a for x in xs { gen b } return b }") == set()
    assert leaves("program p() { gen a while false { gen b } return b }") == set()
    assert leaves('program p(xs) { for x in xs { "t" } gen c return c }') == {"c"}


def test_either_side_of_an_if_may_follow() -> None:
    source = 'program p(k) { gen a if k { gen b } else { "none" } return a }'
    assert leaves(source) == {"b"}  # a: b may follow it
    assert leaves('program p(k) { gen a if k { "x" } else { "y" } return a }') == {"a"}


def test_roles_and_captures_are_the_same_context() -> None:
    source = (
        'program p() { user { "hi" } assistant { gen a } user { "more" } '
        "assistant { gen b } return b }"
    )
    assert leaves(source) == {"b"}
    assert leaves("program p() { capture c { gen a } gen b return b }") == {"b"}


def test_a_call_runs_in_its_own_context() -> None:
    source = 'program p() { gen a let x = call q() "{x}" return a }\nprogram q() { gen z return z }'
    assert leaves(source) == {"a"}
    assert leaves(source, "q") == {"z"}
