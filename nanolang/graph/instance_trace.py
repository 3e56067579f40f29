"""The request graph an instance actually ran, as JSON (``nanolang run --trace FILE``).

Nodes are the instance's ``gen``, ``select`` and ``fork`` nodes (``NodeRecord``); edges say
which node's tokens a node extends (``extends``) and which fork a branch's first request came
from (``fork``). The static graph of the program is ``nanolang graph``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from nanolang.run.records import NodeRecord, Outcome


def edges(nodes: tuple[NodeRecord, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for node in nodes:
        if node.parent is not None:
            out.append({"from": node.parent, "to": node.id, "kind": "extends"})
        if node.group is not None and node.kind == "gen":
            out.append({"from": node.group, "to": node.id, "kind": "fork"})
    return out


def totals(nodes: tuple[NodeRecord, ...]) -> dict[str, Any]:
    requests = [n for n in nodes if n.kind != "fork"]
    prompt = sum(n.prompt_tokens * max(1, len(n.request_ids)) for n in requests)
    cached = sum(n.cached_tokens for n in requests)
    return {
        "nodes": len(nodes),
        "requests": sum(len(n.request_ids) for n in requests),
        "prompt_tokens": prompt,
        "new_prompt_tokens": sum(n.new_prompt_tokens for n in requests),
        "output_tokens": sum(n.output_tokens for n in requests),
        "cached_tokens": cached,
        "cache_hit_rate": round(cached / prompt, 4) if prompt else 0.0,
        "seconds": round(max((n.finished_s for n in nodes), default=0.0), 6),
    }


def trace_record(program: str, outcome: Outcome) -> dict[str, Any]:
    """One instance's trace: its value or error, nodes, edges and totals."""
    nodes = tuple(sorted(outcome.nodes, key=lambda n: n.id))
    return {
        "program": program,
        "instance": outcome.index,
        "value": outcome.value if outcome.ok else None,
        "error": None if outcome.error is None else str(outcome.error),
        "nodes": [_node(n) for n in nodes],
        "edges": edges(nodes),
        "totals": totals(nodes),
    }


def _node(node: NodeRecord) -> dict[str, Any]:
    record = asdict(node)
    record["request_ids"] = list(node.request_ids)
    record["alternatives"] = list(node.alternatives)
    record["submitted_s"] = round(node.submitted_s, 6)
    record["finished_s"] = round(node.finished_s, 6)
    return record
