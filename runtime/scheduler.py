"""Continuous batching under a token budget, with chunked prefill and preemption by recomputation.

Each iteration: running decodes first (one token each), then chunks of running prefills, then new
admissions, until the token budget or the sequence cap is reached. A sequence is admitted only when
free blocks cover its whole uncomputed prompt; a decode that finds no free block preempts the most
recently arrived running sequence (its blocks are freed and it is recomputed later), so the engine
never crashes for lack of KV memory and never loses a request.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.sequence import Sequence, SequenceStatus


@dataclass(frozen=True)
class ScheduledSequence:
    seq: Sequence
    num_tokens: int  # tokens fed this iteration, from seq.num_computed_tokens on

    @property
    def is_decode(self) -> bool:
        return self.num_tokens == 1 and self.seq.num_uncomputed_tokens == 1

    @property
    def samples(self) -> bool:
        """Whether this chunk reaches the sequence's last token (so a new token is sampled)."""
        return self.seq.num_computed_tokens + self.num_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    """Decodes first, then prefill chunks: the order of rows in the flat token batch (the
    contract ``AttentionMetadata`` checks and the attention kernels rely on)."""

    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)

    @property
    def num_decode_seqs(self) -> int:
        return sum(1 for s in self.scheduled if s.is_decode)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    def __init__(self, config: EngineConfig, blocks: BlockManager) -> None:
        self.config = config
        self.blocks = blocks
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take a finished or aborted sequence out of the queues and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        decodes = [s for s in self.running if s.num_uncomputed_tokens == 1 and not s.awaiting_final]
        prefills = [s for s in self.running if s.num_uncomputed_tokens > 1]
        budget = self._schedule_decodes(decodes, budget, out)
        budget = self._schedule_prefills(prefills, budget, out)
        self._admit(budget, out)
        # an admission with one uncomputed token (a cached prompt but its last token) is a decode:
        # it joins the decodes at the front, the order every attention kernel relies on
        out.scheduled.sort(key=lambda e: not e.is_decode)  # stable
        return out

    def _schedule_decodes(self, decodes: list[Sequence], budget: int, out: SchedulerOutput) -> int:
        for seq in decodes:
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:  # preempted by an earlier decode
                continue
            if not self._make_room(seq, seq.num_tokens, out):
                continue
            self.blocks.grow(seq, seq.num_tokens)
            out.scheduled.append(ScheduledSequence(seq, 1))
            budget -= 1
        return budget

    def _schedule_prefills(
        self, prefills: list[Sequence], budget: int, out: SchedulerOutput
    ) -> int:
        for seq in prefills:
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:
                continue
            n = min(seq.num_uncomputed_tokens, budget)
            out.scheduled.append(ScheduledSequence(seq, n))
            budget -= n
        return budget

    def _admit(self, budget: int, out: SchedulerOutput) -> None:
        prefilling = self._prefilling_first_blocks()
        deferred: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if seq.num_pending:  # preempted with a token still on the device: wait for it
                break
            key = None if seq.block_table else self._prefix_key(seq)
            if key is not None and key in prefilling:
                # another request is computing this prefix now: start after it, from the cache
                deferred.append(self.waiting.popleft())
                continue
            self.blocks.reuse_prefix(seq)
            n = seq.num_uncomputed_tokens
            too_long = n > budget and not self.config.enable_chunked_prefill
            if too_long or not self.blocks.can_grow(seq, seq.num_tokens):
                self.blocks.undo_reuse(seq)
                break
            self.waiting.popleft()
            self.blocks.grow(seq, seq.num_tokens)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            chunk = min(n, budget)
            out.scheduled.append(ScheduledSequence(seq, chunk))
            budget -= chunk
            if key is not None and seq.num_uncomputed_tokens > 1:
                prefilling.add(key)
        self.waiting.extendleft(reversed(deferred))

    def _prefix_key(self, seq: Sequence) -> tuple[int, ...] | None:
        """The prompt's first full block, when prefix caching could share it."""
        bs = self.blocks.block_size
        if self.blocks.cache is None or seq.num_prompt_tokens <= bs:
            return None
        return tuple(seq.prompt_token_ids[:bs])

    def _prefilling_first_blocks(self) -> set[tuple[int, ...]]:
        """First blocks of the prompts that running sequences are still computing."""
        keys = set()
        for seq in self.running:
            if seq.num_computed_tokens < seq.num_prompt_tokens:
                key = self._prefix_key(seq)
                if key is not None:
                    keys.add(key)
        return keys

    def _make_room(self, seq: Sequence, num_tokens: int, out: SchedulerOutput) -> bool:
        """Preempt the latest-arrived running sequences until ``seq`` can grow; False if ``seq``
        itself had to be preempted."""
        while not self.blocks.can_grow(seq, num_tokens):
            victim = max(self.running, key=lambda s: s.arrival_order)
            self._preempt(victim, out)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_computed_tokens = 0
        seq.metrics.num_preemptions += 1
        self.waiting.appendleft(seq)
        out.preempted.append(seq)
        out.scheduled = [s for s in out.scheduled if s.seq is not seq]
