"""The engine: add requests, step (schedule -> run -> postprocess), abort. Single-threaded."""

from __future__ import annotations

import itertools
import logging
import random
import time
from array import array
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig, ModelConfig, context_limit, read_json
from runtime.detokenizer import IncrementalDetokenizer, find_stop
from runtime.distributed.executor import TensorParallelRunner
from runtime.engine_ops import engine_ops
from runtime.kv_budget import kv_memory_budget, num_kv_blocks
from runtime.model.loader import build_model, resolve_model
from runtime.model_runner import Launched, ModelRunner, kv_bytes_per_block, kv_cache_dtype
from runtime.outputs import OutputKind, RequestOutput
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler, SchedulerOutput
from runtime.sequence import PENDING, FinishReason, Sequence, SequenceStatus
from runtime.tokenizer import load_tokenizer

logger = logging.getLogger("runtime")


@dataclass
class EngineStats:
    """Counters for metrics and tests."""

    num_iterations: int = 0
    num_preemptions: int = 0
    num_finished: int = 0
    num_aborted: int = 0
    prompt_tokens_computed: int = 0
    generated_tokens: int = 0
    last_iteration_seconds: float = 0.0
    last_schedule_seconds: float = 0.0  # host time forming the batch
    last_postprocess_seconds: float = 0.0  # host time appending tokens, stops, outputs
    last_batch_tokens: int = 0
    last_batch_seqs: int = 0
    last_kv_tokens_read: int = 0  # sum of the contexts attended over in the last iteration
    last_attn_pairs: int = 0  # sum of q_len x context_len in the last iteration


def resolve_dtype(dtype: str | torch.dtype, cfg: ModelConfig, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        return getattr(torch, cfg.torch_dtype, torch.bfloat16)
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, float16 or bfloat16")
    return getattr(torch, dtype)


def resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class LLMEngine:
    def __init__(
        self,
        model: str,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        load_format: str = "auto",
        config: EngineConfig | None = None,
        hf_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.device = resolve_device(device)
        path, self.model_config = resolve_model(str(model), hf_overrides)
        self.dtype = resolve_dtype(dtype, self.model_config, self.device)
        self.tokenizer = load_tokenizer(path) if load_format != "dummy" or path else None
        self.eos_token_ids = self._eos_ids(path)
        limit = context_limit(self.model_config, self.config)
        self.kv_dtype = kv_cache_dtype(self.config.kv_cache_dtype, self.dtype)
        self.runner: ModelRunner | TensorParallelRunner
        self.pipeline_summary: str | None = None  # what EngineConfig.pipeline runs; None: none
        if self.config.tensor_parallel_size > 1:
            num_blocks, kernels = self._start_workers(str(model), load_format, hf_overrides, limit)
        else:
            num_blocks, kernels = self._build_local(str(model), load_format, hf_overrides, limit)
        self._context_limit = limit
        self.kv_capacity_blocks = num_blocks  # the KV cache tensors' blocks (reset_kv's ceiling)
        self.scheduler = Scheduler(self.config, self.blocks)
        self.async_scheduling = (
            self.config.async_scheduling
            if self.config.async_scheduling is not None
            else self.device.type == "cuda"
        )
        self.stats = EngineStats()
        self._seqs: dict[str, Sequence] = {}  # live requests by id (waiting, running, in flight)
        self._ids = itertools.count()
        self._rng = random.Random(self.config.seed)
        self._constraints: Any = None  # a ConstraintCompiler, built on first use
        self._inflight: Launched | None = None  # launched, not yet read back (async scheduling)
        # whether a sequence of the in-flight iteration (of the last launched) needs its tokens
        # on the host before the next iteration is formed (Sequence.needs_host_tokens)
        self._inflight_sync = self._launched_sync = False
        logger.info(
            "engine: %s on %s (%s, KV cache %s), %d KV blocks of %d tokens, max_model_len %d, "
            "kernels: %s",
            model,
            self.device,
            self.dtype,
            self.kv_dtype,
            num_blocks,
            self.config.block_size,
            self.max_model_len,
            kernels,
        )

    def _build_local(
        self, model: str, load_format: str, hf_overrides: dict[str, Any] | None, limit: int
    ) -> tuple[int, str]:
        """The model, its KV cache and CUDA graphs in this process (no tensor parallelism)."""
        self.model = build_model(
            model, hf_overrides, self.dtype, self.device, load_format, limit, self.config.seed
        )
        self.ops = engine_ops(self.config, self.device)
        num_blocks = self._num_blocks(limit)
        self._make_blocks(num_blocks, limit)
        self.runner = ModelRunner(self.model, self.ops, self.blocks, num_blocks, self.kv_dtype)
        if self.config.pipeline is not None:
            self._install_pipeline(self.runner, self.config.pipeline)
        if self.device.type == "cuda" and not self.config.enforce_eager:
            self.runner.capture_cuda_graphs(self.max_model_len, self.config.max_num_seqs)
        return num_blocks, self.ops.describe()

    def _install_pipeline(self, runner: ModelRunner, spec: str) -> None:
        """The pipeline's forward on the runner, unless its plan set says dense for every batch
        shape: then the runner keeps the model's own forward (no lookup per iteration; the same
        CUDA graphs as without a pipeline), the sequential mode's code path exactly."""
        from runtime.pipeline.guard import guard_for
        from runtime.pipeline.runner import PipelineForward

        guard = guard_for(self.config.guard_config(), self.device)
        fwd = PipelineForward(spec, self.model, self.ops, kv_dtype=self.kv_dtype, guard=guard)
        self.pipeline_summary = fwd.describe()
        if not fwd.always_dense:
            runner.forward = fwd
        logger.info("pipeline %s: %s", spec, self.pipeline_summary)

    def _start_workers(
        self, model: str, load_format: str, hf_overrides: dict[str, Any] | None, limit: int
    ) -> tuple[int, str]:
        """One worker process per rank holds the model; this process keeps the scheduler."""
        from runtime.distributed.tensor_parallel import local_config
        from runtime.distributed.worker import WorkerSpec

        tp = self.config.tensor_parallel_size
        local_config(self.model_config, tp)  # a clear error before any process starts
        if self.device.type == "cuda" and torch.cuda.device_count() < tp:
            raise ValueError(
                f"tensor_parallel_size={tp} needs {tp} GPUs; {torch.cuda.device_count()} visible"
            )
        if self.config.allreduce == "symm_mem" and self.device.type != "cuda":
            raise ValueError("allreduce='symm_mem' needs CUDA GPUs (NVLink peer memory); "
                             f"the device is {self.device}")  # fmt: skip
        spec = WorkerSpec(
            model=model, dtype=str(self.dtype).removeprefix("torch."), device=self.device.type,
            load_format=load_format, config=self.config, hf_overrides=hf_overrides,
            max_positions=limit, world_size=tp, init_method="",
        )  # fmt: skip
        runner = TensorParallelRunner(spec, self.model_config.vocab_size)
        self.runner = runner
        self.pipeline_summary = runner.ready[0].pipeline or None
        self._make_blocks(runner.num_blocks, limit)
        runner.blocks = self.blocks
        return runner.num_blocks, runner.ready[0].kernels

    def _make_blocks(self, num_blocks: int, limit: int) -> None:
        self.blocks = BlockManager(
            num_blocks, self.config.block_size, self.config.enable_prefix_caching
        )
        self.max_model_len = min(limit, num_blocks * self.config.block_size)

    def shutdown(self) -> None:
        """Stop the tensor-parallel workers, if any (also done at interpreter exit)."""
        if isinstance(self.runner, TensorParallelRunner):
            self.runner.shutdown()

    def _eos_ids(self, path: Any) -> frozenset[int]:
        ids = set(self.model_config.eos_token_ids)
        if self.tokenizer is not None and self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen_cfg = path / "generation_config.json" if path else None
        if gen_cfg is not None and gen_cfg.exists():
            eos = read_json(gen_cfg).get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return frozenset(int(i) for i in ids)

    def _num_blocks(self, max_len: int) -> int:
        per_block = kv_bytes_per_block(self.model, self.config.block_size, self.kv_dtype)
        budget = kv_memory_budget(self.model_config, self.config, self.device, self.dtype)
        useful = self.config.max_num_seqs * -(-max_len // self.config.block_size)
        n = num_kv_blocks(budget, per_block, useful)
        if n < 1:
            raise MemoryError(
                f"no memory for the KV cache: budget {budget} bytes, one block needs {per_block}"
            )
        return n

    # ---------------------------------------------------------------- requests
    def add_request(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
        program: ProgramRef | None = None,
        output_kind: OutputKind = OutputKind.CUMULATIVE,
    ) -> str:
        """Queue a request; ``program`` places it in a program instance's request graph (see
        ``runtime.instances`` for the scheduling policies that use it); ``output_kind`` says
        whether ``step`` returns its output after every iteration that advances it or only the
        final one."""
        params = params or SamplingParams()
        text, ids = self._tokenize(prompt)
        self._check_request(ids, params)
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        if rid in self._seqs:
            raise ValueError(
                f"request id {rid!r} is already running: wait for it to finish or abort it first"
            )
        seed = params.seed if params.seed is not None else self._rng.getrandbits(63)
        seq = Sequence(rid, text, ids, params, seed, next(self._ids), self.eos_token_ids)
        seq.program = program
        seq.output_kind = output_kind
        seq.needs_host_tokens = bool(
            params.constrained or params.prompt_logprobs or params.adjusts_logits
        )
        if params.constrained:
            seq.constraint = self.constraint_compiler().compile(
                params.regex, params.json_schema, params.grammar, params.max_tokens
            )
        if self.tokenizer is not None:
            seq.detok = IncrementalDetokenizer(self.tokenizer, ids)
        if params.prompt_logprobs:  # positions before prompt_logprobs_from stay None
            seq.prompt_logprobs.extend([None] * min(params.prompt_logprobs_from, len(ids)))
            if params.top_logprobs:
                seq.prompt_top_logprobs.extend([None] * len(seq.prompt_logprobs))
        self._seqs[rid] = seq
        self.scheduler.add(seq)
        return rid

    def _tokenize(self, prompt: str | list[int]) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this model has no tokenizer: pass prompts as token-id lists")
            return prompt, list(self.tokenizer.encode(prompt, add_special_tokens=False))
        if not isinstance(prompt, list | tuple):
            raise TypeError("a prompt is a string or a list of token ids")
        return None, list(prompt)  # its elements are checked in _check_request

    def _check_request(self, ids: list[int], params: SamplingParams) -> None:
        if not ids:
            raise ValueError("the prompt is empty")
        vocab = self.model_config.vocab_size
        try:  # types and range checked in C (array, numpy): no Python loop per token
            view = np.frombuffer(array("q", ids), dtype=np.int64)
        except TypeError:
            raise TypeError("a prompt is a string or a list of token ids") from None
        except OverflowError:
            raise ValueError(f"prompt token ids out of range [0, {vocab})") from None
        if view.min() < 0 or view.max() >= vocab:
            bad = [t for t in ids if not 0 <= t < vocab]
            raise ValueError(f"prompt token ids out of range [0, {vocab}): {bad[:5]}")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"the prompt has {len(ids)} tokens; this engine's context is "
                f"{self.max_model_len} tokens (prompt plus at least one output token)"
            )
        if params.score_token_ids and max(params.score_token_ids) >= vocab:
            raise ValueError(f"score_token_ids out of range [0, {vocab})")
        if params.stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer; this model has none")

    def constraint_compiler(self) -> Any:
        """The engine's ``runtime.constraints.ConstraintCompiler`` (built on first use; callers
        on other threads may ``prepare`` constraints in its cache before adding requests)."""
        # imported here: llguidance is needed only by requests with constraints
        from runtime.constraints import ConstraintCompiler

        if self._constraints is None:
            if self.tokenizer is None:
                raise ValueError("regex / json_schema / grammar constraints need a tokenizer")
            eos = self.tokenizer.eos_token_id
            self._constraints = ConstraintCompiler(
                self.tokenizer, eos, self.model_config.vocab_size
            )
        return self._constraints

    def abort_request(self, request_id: str) -> RequestOutput | None:
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return None
        self.scheduler.remove(seq)
        seq.finish(FinishReason.ABORT)
        self.stats.num_aborted += 1
        return self._output(seq)

    def reset_kv(self, num_blocks: int | None = None, enable_prefix_caching: bool | None = None):
        """Start over with an empty KV cache of ``num_blocks`` blocks (at most the cache tensors'
        ``kv_capacity_blocks``; all of them when None), prefix caching on or off, keeping the
        model, its cache tensors and its CUDA graphs. Only while no request is in the engine."""
        if self.has_unfinished_requests() or self._seqs:
            raise RuntimeError("reset_kv needs an idle engine (requests are still in it)")
        n = self.kv_capacity_blocks if num_blocks is None else num_blocks
        if not 1 <= n <= self.kv_capacity_blocks:
            raise ValueError(f"num_blocks must be in [1, {self.kv_capacity_blocks}], got {n}")
        if enable_prefix_caching is not None:
            self.config = replace(self.config, enable_prefix_caching=enable_prefix_caching)
        self._make_blocks(n, self._context_limit)
        self.runner.blocks = self.blocks
        self.scheduler = Scheduler(self.config, self.blocks)

    def release_instance(self, instance: int) -> None:
        """A program instance ended: release its pinned KV blocks and its scheduling state."""
        self.scheduler.release_instance(instance)

    def unpin(self, instance: int, nodes: tuple[int, ...]) -> None:
        """Release the pins of ``nodes`` of ``instance`` (no child will extend them)."""
        self.scheduler.instances.unpin(instance, nodes)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished() or self._inflight is not None

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def num_waiting_tokens(self) -> int:
        """The tokens of the waiting sequences, at most (counted in whole KV blocks)."""
        return self.scheduler.waiting.blocks_needed * self.config.block_size

    # ---------------------------------------------------------------- step
    def step(self) -> list[RequestOutput]:
        """One iteration; returns every request that progressed (finished ones for the last time).

        With ``async_scheduling`` the engine launches iteration i before it reads back iteration
        i-1, so the host forms and prepares the next batch while the device works: outputs come
        one call later, a request's finish is seen one iteration late, and the token sampled in
        that extra iteration is dropped. Iterations with constrained or prompt-logprob requests
        are read back before the next is formed (their next step needs the token on the host).
        """
        outputs: list[RequestOutput] = []
        if self._inflight is not None and self._inflight_sync:
            outputs += self._resolve(self._inflight)
            self._inflight = None
        start = time.perf_counter()
        batch = self.scheduler.schedule()
        self.stats.last_schedule_seconds = time.perf_counter() - start
        self.stats.num_preemptions += len(batch.preempted)
        launched = None if batch.is_empty else self._launch(batch)
        if self._inflight is not None:
            outputs += self._resolve(self._inflight)
        self._inflight = launched
        self._inflight_sync = self._launched_sync
        if launched is not None and not self.async_scheduling:
            outputs += self._resolve(launched)
            self._inflight = None
        if launched is not None:
            self.stats.last_iteration_seconds = time.perf_counter() - start
        elif self._inflight is None and self.scheduler.running:
            # nothing could run (a constrained request waits for its fitted matcher, built on
            # a worker thread): yield the core instead of spinning through empty steps
            time.sleep(0.001)
        return outputs

    def _launch(self, batch: SchedulerOutput) -> Launched:
        """Queue the batch on the device and advance every sequence as if its work were done:
        sampled tokens enter the output as PENDING until ``_resolve`` reads them back. One pass
        over the batch, lengths read inline: at a thousand decodes every per-sequence call
        counts."""
        launched = self.runner.launch(batch, self._inflight)
        s = self.stats
        it = s.num_iterations
        s.num_iterations += 1
        register = self.blocks.register if self.blocks.cache is not None else None
        max_len = self.max_model_len
        tokens = prompt_tokens = kv_read = pairs = 0
        needs_sync = False
        for seq, n in batch.scheduled:
            metrics = seq.metrics
            if metrics.first_scheduled_iteration is None:
                metrics.first_scheduled_iteration = it
            metrics.iterations.append(it)
            start = seq.num_computed_tokens
            out_ids = seq.output_token_ids
            num_tokens = len(seq.prompt_token_ids) + len(out_ids)
            end = start + n
            tokens += n
            kv_read += end
            pairs += n * end
            if not (n == 1 and num_tokens - start == 1):  # a prefill chunk (not a decode)
                prompt_tokens += n
            needs_sync = needs_sync or seq.needs_host_tokens
            seq.num_computed_tokens = end
            # the KV of these tokens is queued: later iterations (same stream) may reuse it, so
            # pending prompt blocks become cached now, not one read-back later
            if register is not None:
                register(seq)
            if end == num_tokens:  # the chunk reaches the last token: it samples
                out_ids.append(PENDING)
                seq.num_pending += 1
                if len(out_ids) >= seq.params.max_tokens or num_tokens + 1 >= max_len:
                    seq.awaiting_final = True
        s.prompt_tokens_computed += prompt_tokens
        s.last_kv_tokens_read, s.last_attn_pairs = kv_read, pairs
        s.last_batch_tokens, s.last_batch_seqs = tokens, len(batch.scheduled)
        self._launched_sync = needs_sync
        return launched

    def _resolve(self, launched: Launched) -> list[RequestOutput]:
        """Read back a launched iteration: fill in its tokens, check stops, emit outputs (for
        every live sequence it advanced that streams, and for those that finished)."""
        result = self.runner.collect(launched)
        post_start = time.perf_counter()
        scheduled = launched.batch.scheduled
        for idx in sorted(result.prompt_logprobs):  # only chunks with prompt targets, not all
            seq = scheduled[idx].seq
            if not seq.is_finished:
                seq.prompt_logprobs.extend(result.prompt_logprobs[idx])
                seq.prompt_top_logprobs.extend(result.prompt_top.get(idx, ()))
        finished = SequenceStatus.FINISHED
        tops = result.top or [None] * len(result.sampled)
        scores = result.scores
        rows = enumerate(zip(result.sampled, tops, strict=True))
        for row, ((entry, token, logprob), top) in rows:
            seq = entry.seq
            if seq.status is not finished:
                if scores and row in scores:  # before the token: it may finish the sequence
                    seq.score_logprobs.append(scores[row])
                self._set_token(seq, token, logprob)
                if top is not None and seq.params.logprobs:
                    seq.top_logprobs.append(top)
        outputs = []
        it = self.stats.num_iterations
        live = self._seqs
        register = self.blocks.register if self.blocks.cache is not None else None
        streams = OutputKind.CUMULATIVE
        for seq, _ in scheduled:
            if live.get(seq.request_id) is not seq:
                continue  # aborted, or finished in an earlier read-back (its id may be reused)
            if register is not None:
                register(seq)  # finished too: its blocks stay cached once freed
            if seq.status is finished:
                seq.metrics.finished_iteration = it
                seq.metrics.finished_time = time.perf_counter()
                self.scheduler.remove(seq)
                del live[seq.request_id]
                self.stats.num_finished += 1
                outputs.append(self._output(seq))
            elif seq.output_kind is streams:
                outputs.append(self._output(seq))
        self.stats.last_postprocess_seconds = time.perf_counter() - post_start
        return outputs

    def _set_token(self, seq: Sequence, token: int, logprob: float) -> None:
        """The oldest PENDING output token of ``seq`` becomes ``token``; then check stops (one
        call per sampled token: it runs for every sequence of every iteration)."""
        out_ids = seq.output_token_ids
        index = len(out_ids) - seq.num_pending
        out_ids[index] = token
        seq.num_pending -= 1
        metrics = seq.metrics
        if metrics.first_token_time is None:
            metrics.first_token_time = time.perf_counter()
        self.stats.generated_tokens += 1
        if self._check_stops(seq, token, logprob, index + 1) and seq.num_pending:
            del out_ids[index + 1 :]  # tokens of iterations launched after the stop
            seq.num_pending = 0

    def _check_stops(self, seq: Sequence, token: int, logprob: float, num_out: int) -> bool:
        """Account for ``token``, the ``num_out``-th resolved output token; finish ``seq`` on a
        stop (True)."""
        p = seq.params
        if p.logprobs:
            seq.logprobs.append(logprob)
        constraint = seq.constraint
        if constraint is not None:
            constraint.advance(token)
            if constraint.error is not None:
                seq.finish(FinishReason.ERROR, f"constraint error: {constraint.error}")
                return True
        if token in seq.eos_token_ids and not p.ignore_eos:
            seq.finish(FinishReason.STOP, None)
            return True
        if token in p.stop_token_ids:
            seq.finish(FinishReason.STOP, token)
            return True
        detok = seq.detok
        if detok is not None:
            delta = detok.append(token)
            seq.output_text = detok.text
            hit = find_stop(seq.output_text, len(delta), p.stop) if p.stop and delta else None
            if hit is not None:
                seq.output_text = seq.output_text[: hit[0]]
                seq.finish(FinishReason.STOP, hit[1])
                return True
        if constraint is not None and constraint.only_eos_allowed():
            seq.finish(FinishReason.STOP, None)
            return True
        if num_out >= p.max_tokens or len(seq.prompt_token_ids) + num_out >= self.max_model_len:
            seq.finish(FinishReason.LENGTH, None)
            return True
        return False

    def _output(self, seq: Sequence) -> RequestOutput:
        return RequestOutput(
            request_id=seq.request_id,
            prompt=seq.prompt,
            prompt_token_ids=seq.prompt_token_ids,
            text=seq.output_text,
            token_ids=seq.resolved_output_ids,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason.value if seq.finish_reason else None,
            stop_reason=seq.stop_reason,
            logprobs=list(seq.logprobs) if seq.params.logprobs else None,
            prompt_logprobs=list(seq.prompt_logprobs) if seq.params.prompt_logprobs else None,
            top_logprobs=list(seq.top_logprobs) if seq.params.logprobs else None,
            prompt_top_logprobs=list(seq.prompt_top_logprobs)
            if seq.params.prompt_logprobs and seq.params.top_logprobs
            else None,
            metrics=seq.metrics,
            num_cached_tokens=seq.num_cached_tokens,
            score_logprobs=list(seq.score_logprobs) if seq.params.score_token_ids else None,
        )
