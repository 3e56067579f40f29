"""One iteration as plain host data: the scheduler's batch turned into the arrays every rank runs.

``plan_step`` reads the scheduled sequences and the block tables (host state only, no device);
the model runner then executes the plan. In one process the two follow each other; under tensor
parallelism the driver plans and every rank executes the same plan (pickled and sent; only the
sampling rank gets its [R, V] sampling tensors).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from runtime.block_manager import BlockManager
from runtime.sampler import SamplingSpec
from runtime.scheduler import SchedulerOutput
from runtime.sequence import Sequence


@dataclass(frozen=True)
class StepPlan:
    """Everything a rank needs to run one iteration; numpy arrays and plain values only."""

    graph: bool  # a decode-only batch replayed through the CUDA graph of its bucket
    input_ids: np.ndarray  # [T] int64; tokens still on the device (pending) are 0, patched
    positions: np.ndarray  # [T] int64
    slots: np.ndarray  # [T] int64 cache slots
    block_tables: np.ndarray  # [B, widest] int32, unused entries 0
    cu_seqlens: tuple[int, ...]  # [B + 1]
    context_lens: tuple[int, ...]  # [B]
    num_decode_seqs: int
    patch_rows: list[int]  # rows whose input token the previous iteration sampled on the device
    patch_src: list[int]  # ... and their rows in that iteration's sampled tokens
    sample_rows: list[int]  # row of each sampling sequence's last token
    sample_index: list[int]  # ... and its index in the batch's scheduled sequences
    prompt_rows: dict[int, tuple[int, int, list[int]]]  # scheduled idx -> (row0, n, target ids)
    prompt_top_k: dict[int, int]  # scheduled idx -> top_logprobs at its prompt positions
    sampling: SamplingSpec
    want_logprobs: bool
    top_k: list[int]  # per sampling row: how many top logprobs it asks for (0: none)
    # per sampling row: the token ids whose logprobs it asks for (empty when no row asks)
    score_ids: tuple[tuple[int, ...], ...] = ()

    @property
    def num_seqs(self) -> int:
        return len(self.context_lens)


def padded_block_tables(tables: list[list[int]]) -> np.ndarray:
    """[B, widest] int32 of the sequences' block tables, unused entries 0, filled by one numpy
    scatter instead of a padded nested list (about 4x less host time at 1,000 sequences)."""
    lens = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
    width = int(lens.max()) if len(tables) else 0
    out = np.zeros((len(tables), width), dtype=np.int32)
    out[np.arange(width)[None, :] < lens[:, None]] = np.fromiter(
        itertools.chain.from_iterable(tables), dtype=np.int32, count=int(lens.sum())
    )
    return out


def plan_step(
    batch: SchedulerOutput,
    prev_row_of: dict[int, int] | None,
    blocks: BlockManager,
    max_graph_batch: int,
    vocab_size: int,
) -> StepPlan:
    """The plan of ``batch``; ``prev_row_of`` maps seq_id to its row in the previous (not yet read
    back) iteration's tokens, ``max_graph_batch`` is the largest captured decode graph (0: none)."""
    ids: list[int] = []
    qlens: list[int] = []
    ctx_lens: list[int] = []
    sample_index: list[int] = []
    samplers: list[Sequence] = []
    patch_index: list[int] = []
    patch_src: list[int] = []
    prompt_rows: dict[int, tuple[int, int, list[int]]] = {}
    prompt_top_k: dict[int, int] = {}
    num_decodes = rows = 0
    wants_prompt_logprobs = False
    # one pass over the batch for what only the sequences know (input tokens, which rows
    # sample); positions, slots and row offsets follow from the lengths in numpy below
    for idx, (seq, n) in enumerate(batch.scheduled):
        start = seq.num_computed_tokens
        end = start + n
        prompt = seq.prompt_token_ids
        p = len(prompt)
        num_tokens = p + len(seq.output_token_ids)
        if n == 1:  # a decode (or a one-token chunk): no slice
            ids.append(prompt[start] if start < p else seq.output_token_ids[start - p])
            num_decodes += end == num_tokens  # ScheduledSequence.is_decode
        else:
            ids.extend(seq.token_slice(start, end))
        qlens.append(n)
        ctx_lens.append(end)
        if end == num_tokens:  # this chunk reaches the last token: the sequence samples
            sample_index.append(idx)
            samplers.append(seq)
            if seq.num_pending:
                # its input token was sampled by the previous iteration, still on the device
                assert prev_row_of is not None and seq.seq_id in prev_row_of, "pending, no source"
                patch_index.append(idx)
                patch_src.append(prev_row_of[seq.seq_id])
        if seq.params.prompt_logprobs:
            wants_prompt_logprobs = True
            # row r predicts token r + 1; skip targets recorded before a preemption
            first = max(start + 1, len(seq.prompt_logprobs))
            targets = seq.token_slice(first, min(end + 1, seq.num_prompt_tokens))
            if targets:
                prompt_rows[idx] = (rows + first - 1 - start, len(targets), targets)
                if seq.params.top_logprobs:
                    prompt_top_k[idx] = seq.params.top_logprobs
        rows += n
    block_tables = padded_block_tables([e.seq.block_table for e in batch.scheduled])
    q = np.asarray(qlens, dtype=np.int64)
    ctx = np.asarray(ctx_lens, dtype=np.int64)
    cu = np.zeros(len(qlens) + 1, dtype=np.int64)
    np.cumsum(q, out=cu[1:])
    seq_of_row = np.repeat(np.arange(len(qlens)), q)
    # a sequence's rows are its positions up to its context length, the last one at ctx - 1
    positions = ctx[seq_of_row] - cu[1:][seq_of_row] + np.arange(rows, dtype=np.int64)
    bs = blocks.block_size
    slots = block_tables[seq_of_row, positions // bs].astype(np.int64) * bs + positions % bs
    input_ids = np.asarray(ids, dtype=np.int64)
    np.maximum(input_ids, 0, out=input_ids)  # PENDING (-1): patched on the device
    last_rows = cu[1:] - 1
    num_seqs = len(batch.scheduled)
    return StepPlan(
        # a decode-only batch a captured graph holds (no prompt logprobs: those need the
        # hidden states of their rows, which a graph does not keep)
        graph=num_seqs <= max_graph_batch and num_decodes == num_seqs and not wants_prompt_logprobs,
        input_ids=input_ids,
        positions=positions,
        slots=slots,
        block_tables=block_tables,
        cu_seqlens=tuple(cu.tolist()),
        context_lens=tuple(ctx_lens),
        num_decode_seqs=num_decodes,
        patch_rows=last_rows[patch_index].tolist(),
        patch_src=patch_src,
        sample_rows=last_rows[sample_index].tolist(),
        sample_index=sample_index,
        prompt_rows=prompt_rows,
        prompt_top_k=prompt_top_k,
        sampling=SamplingSpec.from_seqs(samplers, vocab_size),
        want_logprobs=any(s.params.logprobs for s in samplers),
        top_k=[s.params.top_logprobs if s.params.logprobs else 0 for s in samplers],
        score_ids=_score_ids(samplers),
    )


def _score_ids(samplers: list[Sequence]) -> tuple[tuple[int, ...], ...]:
    """Each sampling row's ``score_token_ids``; () when no row asks (the common case)."""
    ids = tuple(s.params.score_token_ids for s in samplers)
    return ids if any(ids) else ()
