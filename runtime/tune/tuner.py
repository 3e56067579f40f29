"""``tune``: profile a model on its device (or reuse a profile), search every bucket, write the
profile, the plan set and its plans."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runtime.pipeline.plans import SEARCHED_DIR
from runtime.pipeline.planset import PlanSet
from runtime.tune.profiler import ProfileConfig, profile_engine
from runtime.tune.profiles import Profile
from runtime.tune.search import SearchConfig, ShapeResult, search_plans


def measure(model: str, cfg: ProfileConfig, command: str = "", **engine_kwargs: object) -> Profile:
    """Load the model (an engine without CUDA graphs and with a small KV cache of its own; the
    profiler times attention over a separate shared buffer) and profile it."""
    from runtime.llm import LLM

    kwargs = {"enforce_eager": True, "kv_cache_memory_bytes": 1 << 26, **engine_kwargs}
    llm = LLM(model, **kwargs)  # type: ignore[arg-type]
    return profile_engine(llm.engine, model, cfg, command)


def default_out(profile: Profile) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{Path(profile.model).name}-{profile.device}".lower())
    return SEARCHED_DIR / slug.strip("-")


def tune(
    model: str,
    out: Path | None = None,
    profile: Profile | Path | None = None,
    profile_cfg: ProfileConfig | None = None,
    search_cfg: SearchConfig | None = None,
    command: str = "",
    **engine_kwargs: object,
) -> tuple[Profile, PlanSet, list[ShapeResult], Path]:
    """Profile (unless given one), search, and write everything to ``out``; returns the
    profile, the plan set, each bucket's result and the plan set's path."""
    if isinstance(profile, Path):
        prof = Profile.load(profile)
    elif profile is None:
        prof = measure(model, profile_cfg or ProfileConfig(), command, **engine_kwargs)
    else:
        prof = profile
    directory = out or default_out(prof)
    directory.mkdir(parents=True, exist_ok=True)
    prof.save(directory / "profile.json")
    planset, results = search_plans(prof, search_cfg, profile_name="profile.json")
    _remove_old_plans(directory)
    path = planset.save(directory)
    return prof, planset, results, path


def _remove_old_plans(directory: Path) -> None:
    """Plan files of a previous plan set in the same directory."""
    old = directory / "planset.json"
    if not old.exists():
        return
    for b in json.loads(old.read_text()).get("buckets", []):
        for key in ("plan", "candidate"):
            if b.get(key):
                (directory / b[key]).unlink(missing_ok=True)
