"""The offline entry point: ``LLM(model).generate(prompts, params)``, plus the step-level API."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import torch

from runtime.config import EngineConfig
from runtime.engine import LLMEngine
from runtime.outputs import OutputKind, RequestOutput
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams


class LLM:
    """A model with its engine.

    ``model`` is a Hugging Face model directory or a preset name (with ``load_format="dummy"``).
    Keyword arguments not named here go to :class:`EngineConfig` (``block_size``,
    ``max_num_batched_tokens``, ``max_num_seqs``, ``max_model_len``, ``kv_cache_memory_bytes``,
    ``gpu_memory_utilization``, ``enable_chunked_prefill``, ``tensor_parallel_size``, ``seed``).
    ``hf_overrides`` replaces fields of the model's config.json (e.g. ``{"num_hidden_layers": 2}``).
    With ``tensor_parallel_size=N`` (N > 1) the model runs in N worker processes started here
    (rank r on cuda:r, or gloo processes on the CPU); they stop with ``shutdown()``, at the end of
    a ``with LLM(...)`` block, or at interpreter exit, and a failed worker stops them all and
    raises ``TensorParallelError`` in the caller.
    """

    def __init__(
        self,
        model: str,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        load_format: str = "auto",
        hf_overrides: dict[str, Any] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        self.engine = LLMEngine(
            model, dtype, device, load_format, EngineConfig(**engine_kwargs), hf_overrides
        )

    def shutdown(self) -> None:
        """Stop the tensor-parallel workers, if any; the engine cannot run afterwards."""
        self.engine.shutdown()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def num_iterations(self) -> int:
        return self.engine.stats.num_iterations

    def generate(
        self,
        prompts: str | list[int] | Seq[str | list[int]],
        params: SamplingParams | Seq[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Run every prompt to completion; outputs in the order of the prompts."""
        if isinstance(prompts, str) or (
            isinstance(prompts, list) and prompts and isinstance(prompts[0], int)
        ):
            prompts = [prompts]  # type: ignore[list-item]
        prompt_list = list(prompts)  # type: ignore[arg-type]
        if params is None or isinstance(params, SamplingParams):
            param_list = [params or SamplingParams()] * len(prompt_list)
        else:
            param_list = list(params)
            if len(param_list) != len(prompt_list):
                raise ValueError(f"{len(prompt_list)} prompts but {len(param_list)} SamplingParams")
        ids: list[str] = []
        try:
            for prompt, p in zip(prompt_list, param_list, strict=True):
                # only final outputs are kept: none is built while a request runs
                ids.append(self.engine.add_request(prompt, p, output_kind=OutputKind.FINAL_ONLY))
        except Exception:
            for rid in ids:
                self.engine.abort_request(rid)
            raise
        done: dict[str, RequestOutput] = {}
        while len(done) < len(ids):
            for out in self.engine.step():
                if out.finished:
                    done[out.request_id] = out
        return [done[rid] for rid in ids]

    # step-level API, for the language's executor and the server
    def add_request(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
        program: ProgramRef | None = None,
        output_kind: OutputKind = OutputKind.CUMULATIVE,
    ) -> str:
        return self.engine.add_request(prompt, params, request_id, program, output_kind)

    def step(self) -> list[RequestOutput]:
        return self.engine.step()

    def abort_request(self, request_id: str) -> RequestOutput | None:
        return self.engine.abort_request(request_id)

    def has_unfinished_requests(self) -> bool:
        return self.engine.has_unfinished_requests()
