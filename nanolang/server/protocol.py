"""Request bodies (pydantic): OpenAI's completions and chat, and the native endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIRequest(BaseModel):
    """Fields shared by completions and chat; unknown fields are ignored, as OpenAI's are."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(OpenAIRequest):
    """``prompt``: a string, a list of strings, a list of token ids, or a list of such lists.
    ``logprobs``: OpenAI's top-k count; only 0 (the sampled token's) is supported."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(p.text or "" for p in self.content if p.type == "text")


class ChatRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class NativeParams(BaseModel):
    """Everything ``runtime.SamplingParams`` takes (the engine validates values)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    stop: list[str] = Field(default_factory=list)
    stop_token_ids: list[int] = Field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False
    logprobs: bool = False
    prompt_logprobs: bool = False
    prompt_logprobs_from: int = 1
    regex: str | None = None
    json_schema: str | dict[str, Any] | None = None


class NativePrompt(BaseModel):
    """Exactly one of ``prompt`` (text, tokenized without special tokens) and
    ``prompt_token_ids``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None


class GenerateRequest(NativePrompt):
    params: NativeParams = Field(default_factory=NativeParams)
    stream: bool = False


class ScoreRequest(NativePrompt):
    """Choice scoring as ``select`` does it: log-probabilities of each choice after the prompt."""

    choices: list[str] = Field(min_length=1)
    method: Literal["mean", "sum"] = "mean"
