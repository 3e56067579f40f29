"""lm-evaluation-harness's ``local-completions`` model against a live server on the demo model:
a multiple_choice (loglikelihood: echo + logprobs) task and a generate_until task with five stop
strings, on small local datasets, with its default (remote) tokenizer."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.nanolang.server.conftest import DEMO as MODEL
from tests.nanolang.server.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[3]
STOPS = ["\n\n", "Question:", "</s>", "<|end|>", "Answer:"]


def write_tasks(folder: Path) -> None:
    rows = {
        "mc": (ROOT / "programs/data/mmlu.jsonl").read_text().splitlines()[:6],
        "gen": (ROOT / "programs/data/gsm8k.jsonl").read_text().splitlines()[:4],
    }
    for name, lines in rows.items():
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    common = {
        "dataset_path": "json",
        "test_split": "test",
    }
    mc = {
        **common,
        "task": "nano_mc",
        "dataset_kwargs": {"data_files": {"test": str(folder / "mc.jsonl")}},
        "output_type": "multiple_choice",
        "doc_to_text": "The capital of {{country}} is",
        "doc_to_choice": "{{options}}",
        "doc_to_target": "{{['A','B','C','D'].index(expected)}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    gen = {
        **common,
        "task": "nano_gen",
        "dataset_kwargs": {"data_files": {"test": str(folder / "gen.jsonl")}},
        "output_type": "generate_until",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{expected}}",
        "generation_kwargs": {"until": STOPS, "max_gen_toks": 12, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    for task in (mc, gen):  # YAML is a superset of JSON
        (folder / f"{task['task']}.yaml").write_text(json.dumps(task))


def test_lm_eval_local_completions(demo_server: LiveServer, tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    write_tasks(tmp_path)
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={
            "base_url": f"{demo_server.url}/v1/completions",
            "model": MODEL,
            "num_concurrent": 2,
            "max_retries": 1,
        },
        tasks=["nano_mc", "nano_gen"],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
        log_samples=True,
    )
    assert results is not None
    assert results["results"]["nano_mc"]["acc,none"] >= 0.5  # the demo model knows capitals
    assert "exact_match,none" in results["results"]["nano_gen"]
    for sample in results["samples"]["nano_mc"]:
        scores = [r[0] for r in sample["resps"]]
        assert all(math.isfinite(ll) and ll < 0 and isinstance(g, bool) for ll, g in scores)
    for sample in results["samples"]["nano_gen"]:
        assert sample["arguments"][0][1]["until"] == STOPS
        text = sample["resps"][0][0]
        assert isinstance(text, str) and not any(s in text for s in STOPS)
