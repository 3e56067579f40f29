"""One request's state inside the engine, with its lifecycle as an enum."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from runtime.outputs import OutputKind, RequestMetrics
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams

PENDING = -1  # an output token sampled on the device and not yet read back (async scheduling)


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # queued, no KV blocks (new, or preempted and to be recomputed)
    RUNNING = "running"  # holds KV blocks; prefilling or decoding
    FINISHED = "finished"


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    ERROR = "error"  # the request cannot go on (stop_reason says why: a constraint's limit)


@dataclass(eq=False)  # compared by identity: two requests are never the same sequence
class Sequence:
    """Tokens, KV blocks and progress of one request.

    ``num_computed_tokens`` counts tokens whose KV is in the cache; the sequence is in prefill
    while it is below ``len(token_ids) - 1`` (the last token is fed by the next decode step).
    """

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    seed: int  # the request's seed, or one drawn by the engine
    arrival_order: int  # unique per engine: also the sequence's internal identity (seq_id)
    eos_token_ids: frozenset[int] = frozenset()
    status: SequenceStatus = SequenceStatus.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens served from a shared prefix
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None
    output_text: str = ""
    logprobs: list[float] = field(default_factory=list)
    prompt_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)  # per output token
    prompt_top_logprobs: list[dict[int, float] | None] = field(default_factory=list)
    score_logprobs: list[dict[int, float]] = field(default_factory=list)  # per output token
    constraint: Any = None  # a runtime.constraints.TokenConstraint, when the params ask for one
    prefix_node: Any = None  # a runtime.prefix_cache.Node: where this sequence sits in the tree
    num_registered_blocks: int = 0  # leading blocks of block_table registered in the prefix cache
    num_pending: int = 0  # trailing output tokens still PENDING
    awaiting_final: bool = False  # reached max_tokens / the context: finishes once resolved
    detok: Any = None  # a runtime.detokenizer.IncrementalDetokenizer
    program: ProgramRef | None = None  # its place in a program instance's request graph
    # the prefix cache's keys of its first full blocks (tokens known on the host never change)
    block_keys: list[tuple[int, ...]] = field(default_factory=list)
    shared_prefix: int | None = None  # tokens shared with its group's leader (found once)
    metrics: RequestMetrics = field(default_factory=lambda: RequestMetrics(time.perf_counter()))
    output_kind: OutputKind = OutputKind.CUMULATIVE  # which outputs the engine's step returns
    # constrained, prompt logprobs or host-built logit adjustments: an iteration that samples
    # for it is read back before the next is formed (its next step needs the token on the host)
    needs_host_tokens: bool = False

    @property
    def seq_id(self) -> int:
        """The engine's identity of this sequence; a request id may be reused once it is done."""
        return self.arrival_order

    @property
    def token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def last_token_id(self) -> int:
        return self.output_token_ids[-1] if self.output_token_ids else self.prompt_token_ids[-1]

    @property
    def resolved_output_ids(self) -> list[int]:
        """Output tokens known on the host (without the trailing PENDING ones)."""
        n = len(self.output_token_ids) - self.num_pending
        return self.output_token_ids[:n]

    def token_slice(self, start: int, end: int) -> list[int]:
        """token_ids[start:end] without concatenating the whole sequence."""
        p = len(self.prompt_token_ids)
        if end <= p:
            return self.prompt_token_ids[start:end]
        if start >= p:
            return self.output_token_ids[start - p : end - p]
        return self.prompt_token_ids[start:] + self.output_token_ids[: end - p]

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def in_prefill(self) -> bool:
        return self.num_uncomputed_tokens > 1

    def finish(self, reason: FinishReason, stop_reason: str | int | None = None) -> None:
        self.status = SequenceStatus.FINISHED
        self.finish_reason = reason
        self.stop_reason = stop_reason
