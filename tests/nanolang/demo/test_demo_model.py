"""The bundled demo model: a standard Hugging Face directory loaded by the engine like any model,
that knows what it was trained on; its datasets are what the generator writes; the accuracy
table in docs/programs.md is what its committed results files say."""

from __future__ import annotations

import json
import re

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo import model_dir
from nanolang.demo.corpus import render
from nanolang.demo.datasets import SPECS, rows
from nanolang.demo.report import DOC, table
from nanolang.demo.suite import PROGRAMS_DIR, SUITE, entry
from nanolang.demo.tasks import GEO_SYSTEM
from nanolang.jobs import load_results, read_rows, summarize
from runtime import LLM, SamplingParams


@pytest.fixture(scope="module")
def llm() -> LLM:
    return LLM(str(model_dir()), dtype="float32", device="cpu")


def test_model_dir_is_a_small_hugging_face_directory() -> None:
    path = model_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), name
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 10 * 2**20
    assert json.loads((path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


def test_chat_template_is_the_one_it_was_trained_with(llm: LLM) -> None:
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert llm.tokenizer.apply_chat_template(chat, tokenize=False) == render(chat)


@pytest.mark.parametrize(("country", "capital"), [("France", "Paris"), ("Kenya", "Nairobi")])
def test_generates_what_it_learned(llm: LLM, country: str, capital: str) -> None:
    chat = [
        {"role": "system", "content": GEO_SYSTEM},
        {"role": "user", "content": f"What is the capital of {country}?"},
    ]
    prompt = llm.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    out = llm.generate([prompt], SamplingParams(max_tokens=16, temperature=0.0))[0]
    assert out.text == f"The capital of {country} is {capital}."
    assert out.finish_reason == "stop"


def test_datasets_are_what_the_generator_writes() -> None:
    for spec in SPECS:
        lines = (PROGRAMS_DIR / "data" / f"{spec.name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == json.loads(json.dumps(rows(spec)))


def test_docs_table_matches_the_committed_results() -> None:
    measured = []
    for item in SUITE:
        results = load_results(PROGRAMS_DIR / "results" / f"{item.name}.jsonl")
        summary = summarize(read_rows(item.data_path), results, item.metric)
        assert summary.results == summary.rows
        measured.append((item, summary))
    doc = DOC.read_text(encoding="utf-8")
    expected = table([(item, summary, 0.0, "") for item, summary in measured])
    strip_wall = re.compile(r"\| [0-9.]+s \|$", re.MULTILINE)
    assert strip_wall.sub("|", expected) in strip_wall.sub("|", doc)


def test_eval_prints_the_results_table(tmp_path, capsys) -> None:
    mmlu = entry("mmlu")
    data = tmp_path / "mmlu.jsonl"
    data.write_text("\n".join(mmlu.data_path.read_text().splitlines()[:8]) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["eval", str(mmlu.path), "--data", str(data), "--out", str(out), "--quiet"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    match = re.search(r"exact accuracy\s*│\s*([0-9.]+)% \((\d+)/8\)", printed)
    assert match is not None, printed
    assert int(match.group(2)) > 2  # chance is 2 of 8
    assert len(load_results(out)) == 8
