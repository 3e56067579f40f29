"""Turns a scheduled batch into tensors, runs the model, and samples: the device side of a step."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from kernels import AttentionMetadata, Ops
from runtime.block_manager import BlockManager
from runtime.cuda_graph import DecodeGraphs, DecodeInputs, default_buckets
from runtime.model.llama import ForwardContext, LlamaModel, Operation
from runtime.sampler import SamplingBatch, sample
from runtime.scheduler import ScheduledSequence, SchedulerOutput

logger = logging.getLogger("runtime")


@dataclass
class RunnerTimings:
    """Host seconds of the last iteration: building its inputs, and blocked on the device."""

    prepare_s: float = 0.0
    wait_s: float = 0.0
    gpu_s: float = 0.0  # device time from the iteration's first queued work to its last copy


@dataclass
class StepResult:
    """What one forward produced, in the order of the scheduled sequences that sample."""

    sampled: list[tuple[ScheduledSequence, int, float]]  # (entry, token id, logprob)
    prompt_logprobs: dict[int, list[float]]  # index into scheduled -> logprobs of chunk targets
    top: list[TopK | None] = field(default_factory=list)  # per sampled row, when asked
    prompt_top: dict[int, list[TopK]] = field(default_factory=dict)  # per chunk target


TopK = dict[int, float]  # token id -> raw-model logprob of the most likely tokens at a position


def _top_lists(ids: torch.Tensor, values: torch.Tensor, k: list[int]) -> list[TopK]:
    """Rows of [N, K] tensors as dicts of each row's first k[i] entries."""
    return [
        dict(zip(i[:n], v[:n], strict=True))
        for i, v, n in zip(ids.tolist(), values.tolist(), k, strict=True)
    ]


@dataclass
class Launched:
    """An iteration whose device work is queued; ``collect`` waits for it and reads it back."""

    batch: SchedulerOutput
    samplers: list[ScheduledSequence]
    tokens: torch.Tensor  # [R] int64 on the device: the next iteration may read them there
    tokens_host: torch.Tensor  # [R] int64 on the host, filled by a non-blocking copy
    logprobs_host: torch.Tensor | None  # [R] float32 on the host
    prompt_logprobs: dict[int, torch.Tensor]  # scheduled index -> [n] on the host
    started: torch.cuda.Event | None  # recorded before the iteration's first device work
    done: torch.cuda.Event | None  # recorded after the copies (None on the CPU)
    row_of: dict[int, int]  # seq_id -> its row in ``tokens``
    top_host: tuple[torch.Tensor, torch.Tensor] | None = None  # [R, K] ids, logprobs (host)
    prompt_top: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchInputs:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    attn: AttentionMetadata
    sample_rows: list[int]  # row of each sampling sequence's last token
    prompt_rows: dict[int, tuple[int, int, list[int]]]  # scheduled idx -> (row0, n, target ids)


def padded_block_tables(tables: list[list[int]]) -> torch.Tensor:
    """[B, widest] int32 of the sequences' block tables, unused entries 0, filled by one numpy
    scatter instead of a padded nested list (about 4x less host time at 1,000 sequences)."""
    lens = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
    width = int(lens.max()) if len(tables) else 0
    out = np.zeros((len(tables), width), dtype=np.int32)
    out[np.arange(width)[None, :] < lens[:, None]] = np.fromiter(
        itertools.chain.from_iterable(tables), dtype=np.int32, count=int(lens.sum())
    )
    return torch.from_numpy(out)


def kv_cache_dtype(name: str, model_dtype: torch.dtype) -> torch.dtype:
    """The torch dtype of the KV cache for EngineConfig.kv_cache_dtype."""
    return model_dtype if name == "auto" else torch.float8_e4m3fn


def kv_bytes_per_block(model: LlamaModel, block_size: int, dtype: torch.dtype) -> int:
    cfg = model.cfg
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * cfg.num_layers * block_size * cfg.num_kv_heads * cfg.head_dim * elem


class ModelRunner:
    def __init__(
        self,
        model: LlamaModel,
        ops: Ops,
        blocks: BlockManager,
        num_blocks: int,
        kv_dtype: torch.dtype | None = None,
    ) -> None:
        self.model, self.ops, self.blocks = model, ops, blocks
        self.device = model.embed_tokens.device
        self.dtype = model.embed_tokens.dtype
        self.kv_dtype = kv_dtype or self.dtype
        self.graphs: DecodeGraphs | None = None
        # (input_ids, ctx) -> hidden: the dense model, or a pipeline plan applied to it
        self.forward: Callable[[torch.Tensor, ForwardContext], torch.Tensor] = model
        self.timings = RunnerTimings()
        # profiling: when set, the next iteration runs eagerly with this per-operation hook
        self.profile_hook: Callable[[Operation, Callable[[], None]], None] | None = None
        cfg = model.cfg
        # one extra block past the allocator's range: the scratch block of CUDA-graph padding rows
        shape = (num_blocks + 1, blocks.block_size, cfg.num_kv_heads, cfg.head_dim)
        self.scratch_block = num_blocks
        self.kv_caches = [
            (
                torch.zeros(shape, dtype=self.kv_dtype, device=self.device),
                torch.zeros(shape, dtype=self.kv_dtype, device=self.device),
            )
            for _ in range(cfg.num_layers)
        ]

    def prepare(self, batch: SchedulerOutput) -> BatchInputs:
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        cu = [0]
        ctx_lens: list[int] = []
        sample_rows: list[int] = []
        prompt_rows: dict[int, tuple[int, int, list[int]]] = {}
        for idx, entry in enumerate(batch.scheduled):
            seq, start, n = entry.seq, entry.seq.num_computed_tokens, entry.num_tokens
            ids.extend(max(t, 0) for t in seq.token_slice(start, start + n))  # PENDING: patched
            positions.extend(range(start, start + n))
            slots.extend(self.blocks.slot(seq, p) for p in range(start, start + n))
            if entry.samples:
                sample_rows.append(len(ids) - 1)
            if seq.params.prompt_logprobs:
                # row r predicts token r + 1; skip targets recorded before a preemption
                first = max(start + 1, len(seq.prompt_logprobs))
                targets = seq.token_slice(first, min(start + n + 1, seq.num_prompt_tokens))
                if targets:
                    prompt_rows[idx] = (cu[-1] + first - 1 - start, len(targets), targets)
            cu.append(len(ids))
            ctx_lens.append(start + n)
        return BatchInputs(
            input_ids=self._tensor(ids, torch.int64),
            positions=self._tensor(positions, torch.int64),
            attn=self._metadata(batch, slots, cu, ctx_lens),
            sample_rows=sample_rows,
            prompt_rows=prompt_rows,
        )

    def _metadata(
        self, batch: SchedulerOutput, slots: list[int], cu: list[int], ctx_lens: list[int]
    ) -> AttentionMetadata:
        tables = padded_block_tables([e.seq.block_table for e in batch.scheduled])
        return AttentionMetadata(
            cu_seqlens_q=self._tensor(cu, torch.int32),
            context_lens=self._tensor(ctx_lens, torch.int32),
            block_tables=self._upload(tables),
            slot_mapping=self._tensor(slots, torch.int64),
            num_decode_seqs=batch.num_decode_seqs,
            max_query_len=max(b - a for a, b in itertools.pairwise(cu)),
            max_context_len=max(ctx_lens),
            block_size=self.blocks.block_size,
            cu_seqlens_q_host=tuple(cu),
            context_lens_host=tuple(ctx_lens),
        )

    def _tensor(self, data: list, dtype: torch.dtype) -> torch.Tensor:  # type: ignore[type-arg]
        return self._upload(torch.tensor(data, dtype=dtype))

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def capture_cuda_graphs(self, max_model_len: int, max_num_seqs: int) -> None:
        attention = self.ops.paged_attention
        if not attention.supports_cuda_graphs(self.dtype):
            logger.info("attention backend %s cannot be captured in %s: decode runs eagerly",
                        attention.name, self.dtype)  # fmt: skip
            return
        self.graphs = DecodeGraphs(
            self.model, self.ops, self.kv_caches, self.scratch_block, self.blocks.block_size,
            max_model_len, default_buckets(max_num_seqs), self.forward,
        )  # fmt: skip
        self.graphs.capture()

    def _graph_fits(self, batch: SchedulerOutput) -> bool:
        n = len(batch.scheduled)
        return (
            self.graphs is not None
            and batch.num_decode_seqs == n
            and self.graphs.bucket_for(n) is not None
            and not any(e.seq.params.prompt_logprobs for e in batch.scheduled)
        )

    def _decode_inputs(self, batch: SchedulerOutput) -> DecodeInputs:
        seqs = [e.seq for e in batch.scheduled]
        positions = [s.num_computed_tokens for s in seqs]
        return DecodeInputs(
            input_ids=torch.tensor([max(s.last_token_id, 0) for s in seqs], dtype=torch.int64),
            positions=torch.tensor(positions, dtype=torch.int64),
            slot_mapping=torch.tensor(
                [self.blocks.slot(s, p) for s, p in zip(seqs, positions, strict=True)]
            ),
            context_lens=torch.tensor([p + 1 for p in positions], dtype=torch.int32),
            block_tables=padded_block_tables([s.block_table for s in seqs]),
        )

    def run(self, batch: SchedulerOutput) -> StepResult:
        """Run one iteration to completion (launch, then collect)."""
        return self.collect(self.launch(batch, None))

    def _pending_inputs(
        self, batch: SchedulerOutput, prev: Launched | None
    ) -> tuple[list[int], list[int]]:
        """Rows whose input token is still on the device (sampled by ``prev``, not yet read back):
        (row in this batch, row in prev.tokens)."""
        rows, src = [], []
        row = 0
        for entry in batch.scheduled:
            row += entry.num_tokens
            seq = entry.seq
            if (
                seq.num_pending
                and entry.seq.num_computed_tokens + entry.num_tokens == seq.num_tokens
            ):
                assert prev is not None and seq.seq_id in prev.row_of, "pending token, no source"
                rows.append(row - 1)
                src.append(prev.row_of[seq.seq_id])
        return rows, src

    @torch.inference_mode()
    def launch(self, batch: SchedulerOutput, prev: Launched | None) -> Launched:
        """Queue the iteration's device work without waiting for it. Input tokens sampled by
        ``prev`` and not yet known on the host are taken from ``prev.tokens`` on the device."""
        t0 = time.perf_counter()
        started = None
        if self.device.type == "cuda":
            started = torch.cuda.Event(enable_timing=True)
            started.record()
        samplers = [e for e in batch.scheduled if e.samples]
        hook, self.profile_hook = self.profile_hook, None
        rows, src = self._pending_inputs(batch, prev)
        prompt_lp: dict[int, torch.Tensor] = {}
        prompt_top: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if hook is None and self._graph_fits(batch):
            assert self.graphs is not None
            input_ids = self.graphs.load(self._decode_inputs(batch))
            self._patch(input_ids, rows, src, prev)
            self.timings.prepare_s = time.perf_counter() - t0
            logits = self.graphs.replay(len(batch.scheduled))
        else:
            inputs = self.prepare(batch)
            self._patch(inputs.input_ids, rows, src, prev)
            self.timings.prepare_s = time.perf_counter() - t0
            self.ops.paged_attention.prepare(inputs.attn)  # host planning, before the layers
            ctx = ForwardContext(inputs.positions, inputs.attn, self.kv_caches, self.ops, hook)
            hidden = self.forward(inputs.input_ids, ctx)
            sample_rows = torch.tensor(inputs.sample_rows, device=self.device, dtype=torch.long)
            logits = self.model.compute_logits(hidden.index_select(0, sample_rows), self.ops)
            prompt_lp, prompt_top = self._prompt_logprobs(batch, hidden, inputs)
        launched = self._sample(batch, samplers, logits, prompt_lp, prompt_top)
        launched.started = started
        return launched

    def _patch(
        self, input_ids: torch.Tensor, rows: list[int], src: list[int], prev: Launched | None
    ) -> None:
        if rows:
            assert prev is not None
            dst = torch.tensor(rows, dtype=torch.long).to(self.device, non_blocking=True)
            idx = torch.tensor(src, dtype=torch.long).to(self.device, non_blocking=True)
            input_ids[dst] = prev.tokens[idx]

    def _sample(
        self,
        batch: SchedulerOutput,
        samplers: list[ScheduledSequence],
        logits: torch.Tensor,
        prompt_lp: dict[int, torch.Tensor],
        prompt_top: dict[int, tuple[torch.Tensor, torch.Tensor]],
    ) -> Launched:
        sbatch = SamplingBatch.build([e.seq for e in samplers], logits.shape[-1], self.device)
        want_logprobs = any(e.seq.params.logprobs for e in samplers)
        num_top = max((e.seq.params.top_logprobs for e in samplers if e.seq.params.logprobs),
                      default=0)  # fmt: skip
        out = sample(logits, sbatch, self.ops, want_logprobs, num_top)
        tokens, logprobs = out.tokens, out.logprobs
        top = None if out.top_ids is None or out.top_logprobs is None else (
            out.top_ids, out.top_logprobs)  # fmt: skip
        done = None
        if self.device.type == "cuda":
            tokens_host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
            tokens_host.copy_(tokens, non_blocking=True)
            lp_host = None if logprobs is None else logprobs.to("cpu", non_blocking=True)
            prompt_lp = {k: v.to("cpu", non_blocking=True) for k, v in prompt_lp.items()}
            top = None if top is None else self._to_host_pairs({0: top})[0]
            prompt_top = self._to_host_pairs(prompt_top)
            done = torch.cuda.Event(enable_timing=True)
            done.record()
        else:
            tokens_host, lp_host = tokens, logprobs
        row_of = {e.seq.seq_id: i for i, e in enumerate(samplers)}
        return Launched(
            batch, samplers, tokens, tokens_host, lp_host, prompt_lp, None, done, row_of, top,
            prompt_top,
        )  # fmt: skip

    def _to_host_pairs(
        self, pairs: dict[int, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        if self.device.type != "cuda":
            return pairs
        return {
            k: (a.to("cpu", non_blocking=True), b.to("cpu", non_blocking=True))
            for k, (a, b) in pairs.items()
        }

    def collect(self, launched: Launched) -> StepResult:
        """Wait for a launched iteration and read its results back (the iteration's one sync)."""
        t0 = time.perf_counter()
        if launched.done is not None:
            launched.done.synchronize()
            if launched.started is not None:
                self.timings.gpu_s = launched.started.elapsed_time(launched.done) / 1e3
        self.timings.wait_s = time.perf_counter() - t0
        tokens = launched.tokens_host.tolist()
        lps = [0.0] * len(tokens)
        if launched.logprobs_host is not None:
            lps = launched.logprobs_host.tolist()
        prompt = {k: v.tolist() for k, v in launched.prompt_logprobs.items()}
        result = StepResult(list(zip(launched.samplers, tokens, lps, strict=True)), prompt)
        if launched.top_host is not None:
            ks = [e.seq.params.top_logprobs if e.seq.params.logprobs else 0
                  for e in launched.samplers]  # fmt: skip
            tops = _top_lists(*launched.top_host, ks)
            result.top = [t if k else None for t, k in zip(tops, ks, strict=True)]
        for idx, (ids, values) in launched.prompt_top.items():
            k = launched.batch.scheduled[idx].seq.params.top_logprobs
            result.prompt_top[idx] = _top_lists(ids, values, [k] * len(ids))
        return result

    def _prompt_logprobs(
        self, batch: SchedulerOutput, hidden: torch.Tensor, inputs: BatchInputs
    ) -> tuple[dict[int, torch.Tensor], dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Per scheduled index: logprobs of the chunk's prompt targets [n], and when the request
        asks for top_logprobs, the top k ids and logprobs at each of those positions [n, k]."""
        out: dict[int, torch.Tensor] = {}
        tops: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for idx, (row0, n, targets) in inputs.prompt_rows.items():
            logits = self.model.compute_logits(hidden[row0 : row0 + n], self.ops)
            lp = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(targets, device=self.device).unsqueeze(1)
            out[idx] = lp.gather(1, target).squeeze(1)
            if k := batch.scheduled[idx].seq.params.top_logprobs:
                top = lp.topk(k, dim=-1)
                tops[idx] = (top.indices, top.values)
        return out, tops
