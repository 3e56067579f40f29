"""Run options (backend, seed, sampling defaults) and how ``run(...)``'s arguments split between
them and the program's own parameters."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from nanolang.backends.base import Backend
from nanolang.check.genargs import GEN_ARGS, argument_error
from nanolang.run.tools import as_tools
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoRuntimeError

# gen arguments a run may set for every gen of the instance (SGLang's run-level sampling args)
DEFAULTABLE = (
    "max_tokens",
    "min_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "ignore_eos",
)


@dataclass(frozen=True)
class RunOptions:
    """How instances run: the backend, the run's seed, sampling defaults for every ``gen``
    (a gen's own arguments win), and whether ``run`` streams."""

    backend: Backend | None = None
    seed: int | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    tools: Any = None  # a dict name -> function, or a list of functions

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", as_tools(self.tools))
        if "max_new_tokens" in self.defaults:  # SGLang's name
            defaults = dict(self.defaults)
            defaults["max_tokens"] = defaults.pop("max_new_tokens")
            object.__setattr__(self, "defaults", defaults)
        for name, value in self.defaults.items():
            if name not in DEFAULTABLE:
                raise ValueError(
                    f"{name!r} is not a run-level sampling default; expected one of "
                    + ", ".join(DEFAULTABLE)
                )
            problem = argument_error(GEN_ARGS, name, value)
            if problem:
                raise ValueError(problem)


OPTION_NAMES = {f.name for f in fields(RunOptions)} - {"defaults"}


def split_run_args(
    program: tree.ProgramDef, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], RunOptions]:
    """``run(*args, **kwargs)``: positional values fill the program's parameters in order; a
    keyword that names a parameter is the program's (even ``seed`` or ``backend``); other
    keywords are run options or sampling defaults; ``run_options=RunOptions(...)`` gives the
    options explicitly (for a program whose parameter hides an option's name)."""
    names = [p.name for p in program.params]
    if len(args) > len(names):
        raise NanoRuntimeError(
            f"{program.name}() takes {len(names)} argument(s), {len(args)} given positionally",
            program.span,
        )
    values = dict(zip(names, args, strict=False))
    explicit = kwargs.pop("run_options", None)
    options: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in names:
            if key in values:
                raise NanoRuntimeError(f"{program.name}() got argument {key!r} twice", program.span)
            values[key] = value
        elif key in OPTION_NAMES:
            options[key] = value
        elif key in DEFAULTABLE or key == "max_new_tokens":
            defaults[key] = value
        else:
            raise NanoRuntimeError(
                f"{program.name}() got unknown argument {key!r}; parameters: "
                f"{', '.join(names) or 'none'}; run options: "
                f"{', '.join(sorted(OPTION_NAMES | set(DEFAULTABLE)))}",
                program.span,
            )
    if explicit is not None:
        if options or defaults:
            raise ValueError("give run options either as keywords or as run_options, not both")
        return values, explicit
    try:
        return values, RunOptions(**options, defaults=defaults)
    except (TypeError, ValueError) as exc:
        raise NanoRuntimeError(str(exc), program.span) from None
