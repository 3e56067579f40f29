"""Tool calling: what ``tool_choice`` constrains the output to, and how the output becomes
``tool_calls``.

- ``none`` (or no tools): plain text.
- a named function: the output is constrained to that function's parameters schema and is
  returned as the call's ``arguments``.
- ``required``: the output is constrained to ``{"name": <a tool>, "arguments": <its schema>}``.
- ``auto``: unconstrained; an output that parses as such an object naming a tool is a call,
  anything else is text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nanolang.server.errors import APIError
from nanolang.server.openai_format import new_id
from nanolang.server.protocol import ChatMessage, ChatRequest, NamedToolChoice
from runtime.constraints import ConstraintSpec

ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ToolMode:
    """``kind``: "none", "named", "required" or "auto"; ``name``: the named function."""

    kind: str
    schemas: dict[str, dict[str, Any]]  # function name -> parameters schema
    name: str | None = None

    def constraint(self) -> ConstraintSpec | None:
        if self.kind == "named":
            assert self.name is not None
            return ConstraintSpec("json_schema", json.dumps(self.schemas[self.name]))
        if self.kind == "required":
            return ConstraintSpec("json_schema", json.dumps(call_schema(self.schemas)))
        return None

    def parse(self, text: str) -> dict[str, Any] | None:
        """The call in a finished output (OpenAI's ``tool_calls`` entry), or None for text."""
        if self.kind == "named":
            assert self.name is not None
            return tool_call(self.name, text)
        if self.kind not in ("required", "auto"):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(value, dict) or value.get("name") not in self.schemas:
            return None
        arguments = value.get("arguments", value.get("parameters", {}))
        return tool_call(value["name"], json.dumps(arguments))


def call_schema(schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One call to any of the tools: ``{"name": ..., "arguments": ...}``."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": schema},
            "required": ["name", "arguments"],
        }
        for name, schema in schemas.items()
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": new_id("call"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def tool_mode(req: ChatRequest) -> ToolMode:
    schemas = {t.function.name: t.function.parameters or ANY_OBJECT for t in req.tools or []}
    if len(schemas) != len(req.tools or []):
        raise APIError(400, "tool function names must be distinct", "tools")
    choice = req.tool_choice or ("auto" if schemas else "none")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in schemas:
            raise APIError(
                400, f"tool_choice names {choice.function.name!r}, not among tools", "tool_choice"
            )
        return ToolMode("named", schemas, choice.function.name)
    if choice != "none" and not schemas:
        raise APIError(400, f"tool_choice {choice!r} needs tools", "tool_choice")
    return ToolMode(choice, schemas)


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: tool calls with their arguments as objects."""
    out = []
    for m in messages:
        try:
            message: dict[str, Any] = {"role": m.role, "content": m.text()}
        except ValueError as exc:
            raise APIError(400, str(exc), "messages") from exc
        if m.name is not None:
            message["name"] = m.name
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.function.name,
                        "arguments": _loads(c.function.arguments),
                    },
                }
                for c in m.tool_calls
            ]
        out.append(message)
    return out


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def template_tools(req: ChatRequest) -> list[dict[str, Any]] | None:
    if not req.tools:
        return None
    return [t.model_dump(exclude_none=True) for t in req.tools]
