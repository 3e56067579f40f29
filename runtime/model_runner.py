"""Runs planned iterations on the device: the model, logits, sampling, and the read-back.

``launch`` plans a scheduled batch (``runtime.step_plan``) and executes the plan; ``collect``
waits for it and reads the results back. Under tensor parallelism every rank executes the same
plan with ``execute`` and only the sampling rank reads back (``runtime.distributed``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kernels import AttentionMetadata, Ops
from runtime.block_manager import BlockManager
from runtime.cuda_graph import DecodeGraphs, DecodeInputs, default_buckets
from runtime.host_copy import list_to_device, to_device
from runtime.kernel_profile import KernelProfile
from runtime.model.llama import ForwardContext, LlamaModel, Operation
from runtime.sampler import sample
from runtime.scheduler import ScheduledSequence, SchedulerOutput
from runtime.step_plan import StepPlan, padded_block_tables, plan_step

__all__ = ["Launched", "ModelRunner", "StepResult", "launch_record", "padded_block_tables"]

logger = logging.getLogger("runtime")


@dataclass
class RunnerTimings:
    """Host seconds of the last iteration: building its inputs, and blocked on the device."""

    prepare_s: float = 0.0
    wait_s: float = 0.0
    gpu_s: float = 0.0  # device time from the iteration's first queued work to its last copy
    graph_s: float = 0.0  # of which the decode graph's replay (0: the iteration ran eagerly)
    graph_seqs: int = 0  # the replayed iteration's sequences (0: eager); it is the one read back


TopK = dict[int, float]  # token id -> raw-model logprob of the most likely tokens at a position


@dataclass
class StepResult:
    """What one forward produced, in the order of the scheduled sequences that sample."""

    sampled: list[tuple[ScheduledSequence, int, float]]  # (entry, token id, logprob)
    prompt_logprobs: dict[int, list[float]]  # index into scheduled -> logprobs of chunk targets
    top: list[TopK | None] = field(default_factory=list)  # per sampled row, when asked
    prompt_top: dict[int, list[TopK]] = field(default_factory=dict)  # per chunk target
    scores: dict[int, TopK] = field(default_factory=dict)  # sampled row -> scored ids' logprobs


def _top_lists(ids: list[list[int]], values: list[list[float]], k: list[int]) -> list[TopK]:
    """Rows of [N, K] lists as dicts of each row's first k[i] entries."""
    return [dict(zip(i[:n], v[:n], strict=True)) for i, v, n in zip(ids, values, k, strict=True)]


@dataclass(frozen=True)
class HostStep:
    """An executed iteration read back to the host: plain lists (picklable)."""

    tokens: list[int]
    logprobs: list[float] | None
    prompt_logprobs: dict[int, list[float]]
    top: list[TopK | None] | None  # per sampling row; None when no row asked
    prompt_top: dict[int, list[TopK]]
    gpu_s: float = 0.0
    scores: dict[int, TopK] = field(default_factory=dict)  # sampling row -> id -> logprob
    graph_s: float = 0.0  # the decode graph's replay, on the device (0: eager)
    graph_seqs: int = 0  # the sequences of that replayed iteration (0: eager)


@dataclass
class DeviceStep:
    """An iteration whose device work is queued; ``read`` waits for it (its one sync)."""

    plan: StepPlan
    tokens: torch.Tensor  # [R] int64 on the device: the next iteration may read them there
    tokens_host: torch.Tensor | None  # [R] int64 on the host (a non-blocking copy); None: not read
    logprobs_host: torch.Tensor | None  # [R] float32 on the host
    prompt_logprobs: dict[int, torch.Tensor]  # scheduled index -> [n] on the host
    started: torch.cuda.Event | None  # recorded before the iteration's first device work
    done: torch.cuda.Event | None  # recorded after the copies (None on the CPU)
    top_host: tuple[torch.Tensor, torch.Tensor] | None = None  # [R, K] ids, logprobs (host)
    prompt_top: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    scores_host: torch.Tensor | None = None  # [rows asking, widest] float32 (score_token_ids)
    # recorded around a decode graph's replay (``DecodeGraphs.replay_events``): the rest of
    # ``started``..``done`` is the copies, the attention backend's replay inputs, the patch,
    # sampling and any wait of the device for the host inside the iteration
    graph: tuple[torch.cuda.Event, torch.cuda.Event] | None = None

    def read(self) -> HostStep:
        gpu_s = graph_s = 0.0
        graph_seqs = 0
        if self.done is not None:
            self.done.synchronize()
            if self.started is not None:
                gpu_s = self.started.elapsed_time(self.done) / 1e3
            if self.graph is not None:
                graph_s = self.graph[0].elapsed_time(self.graph[1]) / 1e3
                graph_seqs = self.plan.num_seqs
        assert self.tokens_host is not None, "this rank does not read iterations back"
        tokens = self.tokens_host.tolist()
        top = None
        if self.top_host is not None:
            ks = self.plan.top_k
            rows = _top_lists(self.top_host[0].tolist(), self.top_host[1].tolist(), ks)
            top = [t if k else None for t, k in zip(rows, ks, strict=True)]
        prompt_top = {
            idx: _top_lists(ids.tolist(), values.tolist(), [self.plan.prompt_top_k[idx]] * len(ids))
            for idx, (ids, values) in self.prompt_top.items()
        }
        return HostStep(
            tokens=tokens,
            logprobs=None if self.logprobs_host is None else self.logprobs_host.tolist(),
            prompt_logprobs={k: v.tolist() for k, v in self.prompt_logprobs.items()},
            top=top,
            prompt_top=prompt_top,
            gpu_s=gpu_s,
            scores=self._scores(),
            graph_s=graph_s,
            graph_seqs=graph_seqs,
        )

    def _scores(self) -> dict[int, TopK]:
        """Per sampling row that asked: its ``score_token_ids`` with their logprobs."""
        if self.scores_host is None:
            return {}
        asking = [(row, ids) for row, ids in enumerate(self.plan.score_ids) if ids]
        values = self.scores_host.tolist()
        return {
            row: dict(zip(ids, v[: len(ids)], strict=True))
            for (row, ids), v in zip(asking, values, strict=True)
        }


@dataclass
class Launched:
    """A launched iteration as the engine sees it: the batch, and where its results come from."""

    batch: SchedulerOutput
    samplers: list[ScheduledSequence]
    row_of: dict[int, int]  # seq_id -> its row in the iteration's sampled tokens
    device: DeviceStep | None = None  # in this process; None: on tensor-parallel workers

    @property
    def tokens(self) -> torch.Tensor:
        assert self.device is not None
        return self.device.tokens


def launch_record(batch: SchedulerOutput, plan: StepPlan, device: DeviceStep | None) -> Launched:
    """The engine's record of a launched iteration: its sampling sequences, from the plan."""
    scheduled = batch.scheduled
    samplers = [scheduled[i] for i in plan.sample_index]
    return Launched(batch, samplers, {e.seq.seq_id: i for i, e in enumerate(samplers)}, device)


def step_result(launched: Launched, host: HostStep) -> StepResult:
    """The engine's view of a read-back iteration."""
    lps = host.logprobs if host.logprobs is not None else [0.0] * len(host.tokens)
    result = StepResult(
        list(zip(launched.samplers, host.tokens, lps, strict=True)), host.prompt_logprobs
    )
    if host.top is not None:
        result.top = host.top
    result.prompt_top = host.prompt_top
    result.scores = host.scores
    return result


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
        # tensor parallelism: whether this rank samples and reads back, and the collective that
        # gives every rank the sampling rank's tokens (in place) before the next iteration
        self.samples = True
        self.share_tokens: Callable[[torch.Tensor], None] | None = None
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

    @property
    def max_graph_batch(self) -> int:
        """The largest decode batch a captured CUDA graph holds (0: none captured)."""
        return self.graphs.max_batch if self.graphs is not None else 0

    def graph_replays(self) -> dict[str, int]:
        """Decode CUDA graph replays so far per plan ('dense': the plain forward); empty
        without graphs (eager mode, the CPU)."""
        return self.graphs.replays_by_plan() if self.graphs is not None else {}

    @property
    def plan_guarded(self) -> bool:
        """Whether a plan guard checks this runner's plans: a plan set's pipeline with a guard
        (not hand-picked plans, which are not guarded, nor a set dense everywhere, whose
        runner keeps the model's own forward)."""
        return getattr(self.forward, "guard", None) is not None

    def plan_guard_report(self) -> list[dict[str, Any]]:
        """The plan guard's buckets so far (runtime.pipeline.guard; empty without one)."""
        guard = getattr(self.forward, "guard", None)
        return [] if guard is None else guard.report()

    def synchronize(self) -> None:
        """Wait until the device has run everything queued so far."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def profile(self) -> KernelProfile:
        """Start a profiler session over this runner's device; ``stop()`` summarises it."""
        return KernelProfile(self.device)

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        return to_device(t, self.device)

    def _tensor(self, data: list, dtype: torch.dtype) -> torch.Tensor:  # type: ignore[type-arg]
        return list_to_device(data, dtype, self.device)

    def _metadata(self, plan: StepPlan) -> AttentionMetadata:
        cu = plan.cu_seqlens
        return AttentionMetadata(
            cu_seqlens_q=self._tensor(list(cu), torch.int32),
            context_lens=self._tensor(list(plan.context_lens), torch.int32),
            block_tables=self._upload(torch.from_numpy(plan.block_tables)),
            slot_mapping=self._upload(torch.from_numpy(plan.slots)),
            num_decode_seqs=plan.num_decode_seqs,
            max_query_len=max(b - a for a, b in itertools.pairwise(cu)),
            max_context_len=max(plan.context_lens),
            block_size=self.blocks.block_size,
            cu_seqlens_q_host=cu,
            context_lens_host=plan.context_lens,
        )

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

    def run(self, batch: SchedulerOutput) -> StepResult:
        """Run one iteration to completion (launch, then collect)."""
        return self.collect(self.launch(batch, None))

    def launch(self, batch: SchedulerOutput, prev: Launched | None) -> Launched:
        """Plan the batch and queue its device work without waiting for it. Input tokens sampled
        by ``prev`` and not yet known on the host are taken from ``prev``'s tokens on the device."""
        t0 = time.perf_counter()
        prev_row_of = None if prev is None else prev.row_of
        vocab = self.model.cfg.vocab_size
        plan = plan_step(batch, prev_row_of, self.blocks, self.max_graph_batch, vocab)
        self.timings.prepare_s = time.perf_counter() - t0
        return launch_record(batch, plan, self.execute(plan, None if prev is None else prev.tokens))

    def collect(self, launched: Launched) -> StepResult:
        """Wait for a launched iteration and read its results back (the iteration's one sync)."""
        assert launched.device is not None
        t0 = time.perf_counter()
        host = launched.device.read()
        self.timings.wait_s = time.perf_counter() - t0
        t = self.timings
        t.gpu_s, t.graph_s, t.graph_seqs = host.gpu_s, host.graph_s, host.graph_seqs
        return step_result(launched, host)

    @torch.inference_mode()
    def execute(self, plan: StepPlan, prev_tokens: torch.Tensor | None) -> DeviceStep:
        """Queue one planned iteration: forward, logits, sampling (on the sampling rank), and the
        copies to the host; ``prev_tokens`` are the previous iteration's tokens on the device."""
        started = None
        if self.device.type == "cuda":
            started = torch.cuda.Event(enable_timing=True)
            started.record()
        graph = None
        hook, self.profile_hook = self.profile_hook, None
        prompt_lp: dict[int, torch.Tensor] = {}
        prompt_top: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if hook is None and plan.graph and self.graphs is not None:
            input_ids = self.graphs.load(self._decode_inputs(plan))
            self._patch(input_ids, plan, prev_tokens, self.graphs.patch_indices)
            logits = self.graphs.replay(plan.num_seqs)
            graph = self.graphs.replay_events
        else:
            input_ids = self._upload(torch.from_numpy(plan.input_ids))
            positions = self._upload(torch.from_numpy(plan.positions))
            attn = self._metadata(plan)
            self._patch(input_ids, plan, prev_tokens)
            self.ops.paged_attention.prepare(attn)  # host planning, before the layers
            ctx = ForwardContext(positions, attn, self.kv_caches, self.ops, hook)
            hidden = self.forward(input_ids, ctx)
            # never torch.tensor(..., device=cuda): that waits for the forward just queued, and
            # the device would idle while the host forms the next batch
            rows = self._tensor(plan.sample_rows, torch.long)
            logits = self.model.compute_logits(hidden.index_select(0, rows), self.ops)
            prompt_lp, prompt_top = self._prompt_logprobs(plan, hidden)
        step = self._sample(plan, logits, prompt_lp, prompt_top, started)
        step.graph = graph
        return step

    @staticmethod
    def _decode_inputs(plan: StepPlan) -> DecodeInputs:
        return DecodeInputs(
            input_ids=torch.from_numpy(plan.input_ids),
            positions=torch.from_numpy(plan.positions),
            slot_mapping=torch.from_numpy(plan.slots),
            context_lens=torch.tensor(plan.context_lens, dtype=torch.int32),
            block_tables=torch.from_numpy(plan.block_tables),
            patch_rows=plan.patch_rows,
            patch_src=plan.patch_src,
        )

    def _patch(
        self,
        input_ids: torch.Tensor,
        plan: StepPlan,
        prev_tokens: torch.Tensor | None,
        uploaded: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        """Write the previous iteration's sampled tokens into the rows that wait for them;
        ``uploaded(k)``: the patch's rows already on the device (a loaded decode graph's)."""
        if plan.patch_rows:
            assert prev_tokens is not None, "a pending input token without its iteration"
            if uploaded is not None:
                dst, idx = uploaded(len(plan.patch_rows))
            else:
                dst = self._tensor(plan.patch_rows, torch.long)
                idx = self._tensor(plan.patch_src, torch.long)
            input_ids.index_copy_(0, dst, prev_tokens.index_select(0, idx))

    def _sample(
        self,
        plan: StepPlan,
        logits: torch.Tensor,
        prompt_lp: dict[int, torch.Tensor],
        prompt_top: dict[int, tuple[torch.Tensor, torch.Tensor]],
        started: torch.cuda.Event | None,
    ) -> DeviceStep:
        if not self.samples:  # a tensor-parallel rank that only receives the sampled tokens
            tokens = torch.empty(len(plan.sample_rows), dtype=torch.int64, device=self.device)
            if self.share_tokens is not None and plan.sample_rows:
                self.share_tokens(tokens)
            return DeviceStep(plan, tokens, None, None, {}, started, None)
        scores = self._score_logprobs(plan, logits)
        sbatch = plan.sampling.to_batch(logits.shape[-1], self.device)
        out = sample(logits, sbatch, self.ops, plan.want_logprobs, max(plan.top_k, default=0))
        tokens, logprobs = out.tokens, out.logprobs
        if self.share_tokens is not None and plan.sample_rows:
            self.share_tokens(tokens)
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
            scores = None if scores is None else scores.to("cpu", non_blocking=True)
            done = torch.cuda.Event(enable_timing=True)
            done.record()
        else:
            tokens_host, lp_host = tokens, logprobs
        return DeviceStep(
            plan, tokens, tokens_host, lp_host, prompt_lp, started, done, top, prompt_top, scores
        )

    def _score_logprobs(self, plan: StepPlan, logits: torch.Tensor) -> torch.Tensor | None:
        """[rows asking, widest] raw-model logprobs of the rows' ``score_token_ids`` (padded
        with token 0), one gather for the whole batch; None when no row asks."""
        if not plan.score_ids:
            return None
        asking = [row for row, ids in enumerate(plan.score_ids) if ids]
        widest = max(len(plan.score_ids[row]) for row in asking)
        columns = [list(ids) + [0] * (widest - len(ids)) for ids in plan.score_ids if ids]
        rows = self._tensor(asking, torch.long)
        lp = torch.log_softmax(logits.index_select(0, rows), dim=-1, dtype=torch.float32)
        return lp.gather(1, self._tensor(columns, torch.long))

    def _to_host_pairs(
        self, pairs: dict[int, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        if self.device.type != "cuda":
            return pairs
        return {
            k: (a.to("cpu", non_blocking=True), b.to("cpu", non_blocking=True))
            for k, (a, b) in pairs.items()
        }

    def _prompt_logprobs(
        self, plan: StepPlan, hidden: torch.Tensor
    ) -> tuple[dict[int, torch.Tensor], dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Per scheduled index: logprobs of the chunk's prompt targets [n], and when the request
        asks for top_logprobs, the top k ids and logprobs at each of those positions [n, k]."""
        out: dict[int, torch.Tensor] = {}
        tops: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for idx, (row0, n, targets) in plan.prompt_rows.items():
            logits = self.model.compute_logits(hidden[row0 : row0 + n], self.ops)
            if not self.samples:
                continue  # the collective inside compute_logits is all this rank takes part in
            lp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
            target = self._tensor(targets, torch.long).unsqueeze(1)
            out[idx] = lp.gather(1, target).squeeze(1)
            if k := plan.prompt_top_k.get(idx, 0):
                top = lp.topk(k, dim=-1)
                tops[idx] = (top.indices, top.values)
        return out, tops
