"""Continuous batching under a token budget, with chunked prefill and preemption by recomputation.

Each iteration: running decodes first (one token each), then chunks of running prefills, then new
admissions, until the token budget or the sequence cap is reached. A sequence is admitted only when
free blocks cover its whole uncomputed prompt and leave free, for the running sequences, the
admission watermark plus the growth reserved for each of them and for itself (the blocks for up
to ``admission_reserve_tokens`` more output tokens each), so the batch is as large as the KV cache
holds without preempting as its sequences grow. The tail rule waives that reserve for the last
waiting requests when all of them, with the running ones, would overrun the free blocks by at most
``admission_tail_overcommit`` of the cache (``_tail_fits``): they start now instead of decoding as a
small batch of their own afterwards. A request whose cached prefix continues into
blocks another sequence is still computing waits for them (pending nodes of the radix tree), so
requests sharing a header compute it once and are then admitted together. A decode that finds no
free block preempts the most recently arrived running sequence (its blocks are freed, its
scheduled tokens go back to the budget and it is recomputed later), so the engine never crashes
for lack of KV memory and never loses a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.instances import InstanceTable
from runtime.sequence import Sequence, SequenceStatus
from runtime.waiting import WaitingQueue, group_key


class ScheduledSequence(NamedTuple):
    """One row group of the batch (a tuple: built for every decode of every iteration, and a
    tuple is several times cheaper to make than a frozen dataclass)."""

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
        self.waiting = WaitingQueue(blocks.blocks_needed)
        self.running: list[Sequence] = []
        self.instances = InstanceTable(blocks.allocator, blocks.block_size)
        num_blocks = blocks.allocator.num_blocks
        self.watermark_blocks = int(config.admission_watermark * num_blocks)
        self._reserved = 0  # KV blocks kept for running sequences' growth (during admission)
        self._tail = False  # this admission pass waives the reserve (``_tail_fits``)
        self._tokens = 0  # tokens scheduled so far in the iteration being formed
        # ``waiting`` is in progress-priority order: kept through every change that cannot
        # break it, so the sort while memory is short runs only after one that can
        self._in_priority_order = False
        # instances that progressed with requests waiting since the queue was last in order:
        # only their requests are out of place
        self._moved: set[int] = set()

    def add(self, seq: Sequence) -> None:
        first = self.instances.note(seq)
        if self._in_priority_order and self.waiting and not self._keeps_order_at_tail(seq):
            ref = seq.program
            if ref is None or (first and self.waiting.has_instance(ref.instance)):
                # a request outside programs has no instance to move; an instance noted afresh
                # re-ranks its requests still waiting from before a release
                self._in_priority_order = False
            else:
                self._moved.add(ref.instance)  # out of place: moves with its instance's requests
        self.waiting.append(seq)

    def _keeps_order_at_tail(self, seq: Sequence) -> bool:
        """Whether appending ``seq`` keeps ``waiting`` in priority order: the tail's instance has
        not moved and ``seq`` ranks after it."""
        last = self.waiting[-1]
        moved = last.program is not None and last.program.instance in self._moved
        return not moved and self.instances.priority(seq) > self.instances.priority(last)

    def release_instance(self, instance: int) -> None:
        """The program instance ended: its pins and group state go (``InstanceTable.release``)."""
        if self.waiting.has_instance(instance):
            self._in_priority_order = False  # its waiting requests lose their instance's rank
        self.instances.release(instance)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take a finished or aborted sequence out of the queues and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        if seq.is_finished:
            self.instances.finished(seq, seq.block_table[: seq.num_registered_blocks])
            if seq.program is not None and self.waiting.has_instance(seq.program.instance):
                self._moved.add(seq.program.instance)  # its waiting requests move up the order
        self.blocks.free(seq)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        self._tokens = 0
        decodes: list[Sequence] = []
        prefills: list[Sequence] = []
        for s in self.running:  # one pass, lengths read inline (no properties per sequence)
            uncomputed = len(s.prompt_token_ids) + len(s.output_token_ids) - s.num_computed_tokens
            if uncomputed == 1:
                # a constrained sequence whose next mask is still being built waits for it
                if not s.awaiting_final and (s.constraint is None or s.constraint.ready()):
                    decodes.append(s)
            elif uncomputed > 1:
                prefills.append(s)
        self._schedule_decodes(decodes, out)
        self._schedule_prefills(prefills, out)
        admitted_from = len(out.scheduled)
        self._admit(out)
        # an admission with one uncomputed token (a cached prompt but its last token) is a decode:
        # it joins the decodes at the front, the order every attention kernel relies on (the
        # running decodes and prefills are in that order already)
        if any(e.is_decode for e in out.scheduled[admitted_from:]):
            out.scheduled.sort(key=lambda e: not e.is_decode)  # stable
        return out

    def _budget(self, out: SchedulerOutput) -> int:
        """Tokens left this iteration (a preempted sequence's tokens count no more)."""
        return self.config.max_num_batched_tokens - self._tokens

    def _schedule(self, out: SchedulerOutput, seq: Sequence, num_tokens: int) -> None:
        out.scheduled.append(ScheduledSequence(seq, num_tokens))
        self._tokens += num_tokens

    def _schedule_decodes(self, decodes: list[Sequence], out: SchedulerOutput) -> None:
        limit = self.config.max_num_batched_tokens
        block_size = self.blocks.block_size
        running = SequenceStatus.RUNNING
        for seq in decodes:
            if self._tokens == limit:  # the budget (a preemption gives tokens back)
                break
            if seq.status is not running:  # preempted by an earlier decode
                continue
            num_tokens = len(seq.prompt_token_ids) + len(seq.output_token_ids)
            if -(-num_tokens // block_size) > len(seq.block_table):  # needs a new block
                if not self._make_room(seq, num_tokens, out):
                    continue
                self.blocks.grow(seq, num_tokens)
            out.scheduled.append(ScheduledSequence(seq, 1))
            self._tokens += 1

    def _schedule_prefills(self, prefills: list[Sequence], out: SchedulerOutput) -> None:
        for seq in prefills:
            budget = self._budget(out)
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:
                continue
            self._schedule(out, seq, min(seq.num_uncomputed_tokens, budget))

    def _admit(self, out: SchedulerOutput) -> None:
        if not self.running and not self.waiting:
            self.instances.calm()
        room = self._budget(out) > 0 and len(self.running) < self.config.max_num_seqs
        if not room or not self.waiting:
            return
        programs = self.waiting.num_programs > 0
        short = programs and self.instances.short_of_memory(self.waiting.blocks_needed)
        if short and not self._in_priority_order:
            self.waiting.sort(key=self.instances.priority)
            self._in_priority_order, self._moved = True, set()
        elif short and self._moved:
            self.waiting.reposition(self._moved, key=self.instances.priority)
            self._moved = set()
        deferred: list[Sequence] = []
        self._reserved = sum(self._future_blocks(s) for s in self.running)
        self._tail = self._tail_fits()
        while self.waiting and len(self.running) < self.config.max_num_seqs:
            budget = self._budget(out)
            if budget == 0:
                break
            seq = self.waiting[0]
            if seq.num_pending:  # preempted with a token still on the device: wait for it
                break
            leader = self.instances.group_leader(seq)
            if leader is not None and leader is not seq:
                if not self._shared_prefix_ready(leader, seq):
                    # the group's first member is computing the shared prefix: start after it
                    deferred.append(self.waiting.popleft())
                    continue
                # the group's members still in the queue (deferred ones have left it)
                key = group_key(seq)
                assert key is not None  # a sequence with a leader is a group member
                members = [
                    s
                    for s in self.waiting.group(key)
                    if s.status is SequenceStatus.WAITING and not s.num_pending
                ]
                if self._admit_together(members, budget, out) is None:
                    break
                continue
            if self.blocks.waits_for_pending(seq):
                # blocks it would reuse are being computed by another sequence: start after them
                deferred.append(self.waiting.popleft())
                continue
            if not self._fits(seq, budget):
                break
            self._start(seq, budget, out)
        self.waiting.push_front(deferred)

    def _shared_prefix_ready(self, leader: Sequence, seq: Sequence) -> bool:
        """Whether the group's first member has the full blocks it shares with ``seq`` computed
        (or served from the cache)."""
        if leader.status is SequenceStatus.WAITING:
            return False
        if leader.is_finished:
            return True
        if seq.shared_prefix is None:  # prompts never change: compared once per member
            shared = common_prefix(leader.prompt_token_ids, seq.prompt_token_ids)
            seq.shared_prefix = shared // self.blocks.block_size * self.blocks.block_size
        return leader.num_computed_tokens >= seq.shared_prefix

    def _fits(self, seq: Sequence, budget: int) -> bool:
        """Take ``seq``'s cached prefix and check its prompt fits (giving up other instances'
        pins if that is what stands in the way); on False, ``seq`` is as it was."""
        self.blocks.reuse_prefix(seq)
        too_long = seq.num_uncomputed_tokens > budget and not self.config.enable_chunked_prefill
        if too_long:
            self.blocks.undo_reuse(seq)
            return False
        while not self._has_room(seq):
            if seq.program is None or not self.instances.release_lowest_pins(below=seq):
                self.blocks.undo_reuse(seq)
                return False
        return True

    def _has_room(self, seq: Sequence) -> bool:
        """Free blocks cover the sequence, plus, while others are running, the watermark and the
        growth reserved for them and for it (alone, a sequence needs room for its prompt only)."""
        need = self.blocks.num_new_blocks(seq, seq.num_tokens)
        if self._tail and not seq.metrics.num_preemptions:
            need += self.watermark_blocks
        elif self.running:
            need = max(need, self._future_blocks(seq)) + self.watermark_blocks + self._reserved
        return need <= self.blocks.allocator.num_free

    def _tail_fits(self) -> bool:
        """Whether the waiting sequences are the tail: all of them could run at once, and to
        the end of their reserves together with the running ones, in the free blocks plus
        ``admission_tail_overcommit`` of all blocks. Then they are admitted on their prompts
        alone rather than left to run as a small batch of their own after the others finish;
        the shortfall (at most that share) is preempted near the end and recomputed. A sequence
        preempted before is never part of a tail (no recomputation loops)."""
        share = self.config.admission_tail_overcommit
        if share <= 0 or not self.running or not self.waiting:
            return False
        if len(self.running) + len(self.waiting) > self.config.max_num_seqs:
            return False  # they cannot all run at once: not the tail yet
        allocator = self.blocks.allocator
        slack = allocator.num_free + int(share * allocator.num_blocks)
        slack -= self._reserved + self.watermark_blocks
        for seq in self.waiting:  # at most max_num_seqs, and it stops at the first shortfall
            if seq.metrics.num_preemptions:
                return False
            slack -= self._future_blocks(seq)
            if slack < 0:
                return False
        return True

    def _future_blocks(self, seq: Sequence) -> int:
        """Blocks ``seq`` must add to its table to hold its tokens and up to
        ``admission_reserve_tokens`` more output tokens."""
        reserve = self.config.admission_reserve_tokens
        more = max(0, min(seq.params.max_tokens - len(seq.output_token_ids), reserve))
        return self.blocks.num_new_blocks(seq, seq.num_tokens + more)

    def _start(self, seq: Sequence, budget: int, out: SchedulerOutput) -> int:
        """Admit ``seq`` (already fitted) with a first chunk; returns the budget left."""
        self.waiting.remove(seq)
        self.blocks.grow(seq, seq.num_tokens)
        self._reserved += self._future_blocks(seq)
        self.blocks.admitted(seq)
        seq.status = SequenceStatus.RUNNING
        self.running.append(seq)
        self.instances.admitted(seq)
        chunk = min(seq.num_uncomputed_tokens, budget)
        self._schedule(out, seq, chunk)
        return budget - chunk

    def _admit_together(
        self, members: list[Sequence], budget: int, out: SchedulerOutput
    ) -> int | None:
        """Admit every waiting member of a group at once, or none (None) while they do not all
        fit; a group that could not fit even alone is admitted member by member."""
        if len(self.running) + len(members) > self.config.max_num_seqs:
            members = members[: self.config.max_num_seqs - len(self.running)]
        fitted: list[Sequence] = []
        for seq in members:
            if not self._fits(seq, budget):
                break
            fitted.append(seq)
            self.blocks.grow(seq, seq.num_tokens)  # reserve now, so the next member sees it
        if len(fitted) < len(members) and (self.running or not fitted):
            for seq in fitted:
                self.blocks.undo_reuse(seq)
            return None
        for seq in fitted:
            budget = self._start(seq, budget, out) if budget > 0 else self._start_idle(seq)
        self.instances.stats.groups_admitted += 1
        return budget

    def _start_idle(self, seq: Sequence) -> int:
        """Admit ``seq`` without a chunk this iteration (the budget ran out mid-group)."""
        self.waiting.remove(seq)
        self._reserved += self._future_blocks(seq)
        self.blocks.admitted(seq)
        seq.status = SequenceStatus.RUNNING
        self.running.append(seq)
        self.instances.admitted(seq)
        return 0

    def _make_room(self, seq: Sequence, num_tokens: int, out: SchedulerOutput) -> bool:
        """Preempt the latest-arrived running sequences until ``seq`` can grow; False if ``seq``
        itself had to be preempted."""
        while not self.blocks.can_grow(seq, num_tokens):
            if self.instances.release_lowest_pins():
                continue
            victim = max(self.running, key=self.instances.priority)
            same = self.instances.same_instance
            victims = [s for s in self.running if s is victim or same(s, victim)]
            if len(victims) > 1:
                self.instances.stats.instances_preempted += 1
            self.instances.release_pins_of(victim)
            for v in victims:
                self._preempt(v, out)
            if seq in victims:
                return False
        return True

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_computed_tokens = 0
        seq.metrics.num_preemptions += 1
        self._in_priority_order = False
        self.waiting.appendleft(seq)
        out.preempted.append(seq)
        kept = [s for s in out.scheduled if s.seq is not seq]
        self._tokens -= sum(s.num_tokens for s in out.scheduled if s.seq is seq)
        out.scheduled = kept


def common_prefix(a: list[int], b: list[int], chunk: int = 256) -> int:
    """How many leading tokens ``a`` and ``b`` share: whole chunks compared as list slices (in
    C), then halves of the chunk that differs, down to single tokens (a few slice comparisons
    where a token-by-token walk of that chunk took up to ``chunk`` steps in Python)."""
    limit, n = min(len(a), len(b)), 0
    while chunk:
        while n + chunk <= limit and a[n : n + chunk] == b[n : n + chunk]:
            n += chunk
        chunk //= 2
    return n
