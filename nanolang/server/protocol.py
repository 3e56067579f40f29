"""Request bodies (pydantic): OpenAI's completions and chat with vLLM's extras, the native
endpoints and the tokenizer routes.

Unknown fields are refused (a 400 naming them), never silently ignored; so are NaN and infinite
numbers. In OpenAI's requests ``null`` means not given. OpenAI's fields that do not change what
is generated (``store``, ``metadata``, ``service_tier``, ``prediction``, prompt-cache hints, ...)
are accepted and ignored, as clients such as the openai SDK and LangChain send them; those that
would change it and cannot be honoured are refused with a reason (``UNSUPPORTED``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

# OpenAI request fields that would change the output and that this server cannot honour: each
# is a 400 saying why (an unknown field's message otherwise)
UNSUPPORTED = {
    "reasoning_effort": "this server has no reasoning-effort control",
    "verbosity": "this server has no verbosity control",
    "audio": "this server generates text only",
    "functions": "use tools (and tool_choice) instead",
    "function_call": "use tools (and tool_choice) instead",
    "web_search_options": "this server has no web search",
    "moderation": "this server runs no moderation",
}


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = False
    continuous_usage_stats: bool = False
    # accepted, ignored: OpenAI pads its chunks against side channels, these chunks carry none
    include_obfuscation: bool | None = None


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` (and its older ``guided_*`` fields): exactly one of these."""

    model_config = STRICT

    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None


class OpenAIRequest(BaseModel):
    """Fields shared by completions and chat: OpenAI's, then vLLM's sampling extras. A field
    sent as ``null`` is not given (OpenAI's fields are nullable; clients that serialize a whole
    request object send null for what they leave unset)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

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
    # the client's end user: requests of one user share one turn to enter the engine
    # (client_identity); nothing else is kept per user
    user: str | None = None
    safety_identifier: str | None = None
    # accepted and ignored: they change nothing this server generates (it stores no completions,
    # serves one tier, caches prompt prefixes by itself)
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    # vLLM's extras
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    regex: str | None = None
    json_schema: dict[str, Any] | str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def continuous_usage(self) -> bool:
        """vLLM's ``continuous_usage_stats`` (with ``include_usage``): usage in every chunk."""
        options = self.stream_options
        return options is not None and options.include_usage and options.continuous_usage_stats


class CompletionRequest(OpenAIRequest):
    """``prompt``: a string, a list of strings, a list of token ids, or a list of such lists.
    ``logprobs``: how many top alternatives per position (0-20; 0 = the chosen token's only).
    ``echo``: the prompt (and with logprobs, its tokens' logprobs) comes first in each choice.
    ``max_tokens`` 0 (with echo) scores the prompt without generating."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None
    response_format: ResponseFormat | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    def text(self) -> str | None:
        if self.content is None or isinstance(self.content, str):
            return self.content
        kinds = {p.type for p in self.content} - {"text"}
        if kinds:
            raise ValueError(f"content parts of type {sorted(kinds)} are not supported")
        return "".join(p.text or "" for p in self.content)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # accepted and ignored: a predicted output only speeds OpenAI's answer up, never changes it
    prediction: dict[str, Any] | None = None
    modalities: list[str] | None = None  # ["text"] only (chat.py refuses others)
    # vLLM's extras
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] | None = None


class NativeParams(BaseModel):
    """Everything ``runtime.SamplingParams`` takes (the engine validates values)."""

    model_config = STRICT

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
    top_logprobs: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[str, float] = Field(default_factory=dict)
    min_tokens: int = 0
    regex: str | None = None
    json_schema: str | dict[str, Any] | None = None
    grammar: str | None = None
    score_token_ids: list[int] = Field(default_factory=list)


class NativePrompt(BaseModel):
    """Exactly one of ``prompt`` (text, tokenized without special tokens) and
    ``prompt_token_ids``."""

    model_config = STRICT

    model: str | None = None
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None


class GenerateRequest(NativePrompt):
    """``stream``: each event carries what is new since the previous one (see native.py)."""

    params: NativeParams = Field(default_factory=NativeParams)
    stream: bool = False


class ScoreRequest(NativePrompt):
    """Choice scoring as ``select`` does it: log-probabilities of each choice after the prompt."""

    choices: list[str] = Field(min_length=1)
    method: Literal["mean", "sum"] = "mean"


class TokenizeRequest(BaseModel):
    """vLLM's ``/tokenize``: a ``prompt`` or chat ``messages`` (rendered by the template)."""

    model_config = STRICT

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = False
    add_generation_prompt: bool = True


class DetokenizeRequest(BaseModel):
    model_config = STRICT

    model: str | None = None
    tokens: list[int]


CompletionRequest.model_rebuild()
