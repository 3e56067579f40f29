"""``RunState``: what ``run`` returns for a program without a ``return`` (as SGLang's
``ProgramState``): its variables by name, ``text()``, ``messages()``, ``get_meta_info(name)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nanolang.run.records import Outcome, Transcript


class RunState:
    """The finished instance: ``state["answer"]``, ``state.text()``, ``state.messages()``."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.transcript = outcome.transcript or Transcript("", (), {})

    def __getitem__(self, name: str) -> Any:
        variables = self.transcript.variables
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise KeyError(f"no variable {name!r} in this run (variables: {known})")
        return variables[name]

    def __contains__(self, name: object) -> bool:
        return name in self.transcript.variables

    def __iter__(self) -> Iterator[str]:
        return iter(self.transcript.variables)

    def get(self, name: str, default: Any = None) -> Any:
        return self.transcript.variables.get(name, default)

    def text(self) -> str:
        """The whole context: prompt text and generated text, chat through the template."""
        return self.transcript.text

    def messages(self) -> list[dict[str, str]]:
        """The chat messages (role and content), in order."""
        return [dict(m) for m in self.transcript.messages]

    def get_meta_info(self, name: str) -> dict[str, Any]:
        """The metadata of ``gen name`` (token ids, logprobs when asked with return_logprob)."""
        return self.transcript.meta.get(name, {})

    def __repr__(self) -> str:
        return f"RunState({self.transcript.variables!r})"


def result_of(outcome: Outcome) -> Any:
    """A finished instance's result: its return value, or (a program without ``return``, as
    SGLang's functions are) its ``RunState``: variables, ``text()``, ``messages()``."""
    return outcome.value if outcome.value is not None else RunState(outcome)
