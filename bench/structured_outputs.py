"""Structured-output backends compared: outlines-core, xgrammar and llguidance.

For each constraint the programs and the tests use (and the pathological ones of issue 16), on two
vocabularies (the demo model's 1,024 tokens and a 32,000-token byte-level BPE trained here on the
Python standard library's source), it measures the compile time and the per-token mask cost along
the tokens of a valid output. Each backend runs in a child process; a constraint over the
wall-clock limit kills it (recorded as a timeout, not waited for) and a fresh child goes on.

    python bench/structured_outputs.py --out bench/results/<date>-cpu-structured-outputs.json
"""

from __future__ import annotations

import argparse
import json
import platform
import select
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("outlines-core", "xgrammar", "llguidance")
KINDS = ("regex", "json_schema", "grammar")
ENGINE_MASKS: list[float] = []  # llguidance: the engine's allowed_mask (bitmask to bool row)

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
EXTRACT = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}

# name -> (kind, constraint, a valid output to walk)
CASES: dict[str, tuple[str, Any, str]] = {
    "score_regex": ("regex", "[0-9]{1,2}", "42"),
    "extract_name_regex": ("regex", '[A-Z][a-z]+"[,}]?', 'Bruno",'),
    "extract_age_regex": ("regex", " [0-9]+,", " 40,"),
    "extract_city_regex": ("regex", '[A-Z][a-z]+( [A-Z][a-z]+)?"[,}]?', 'Mexico City"}'),
    "choice_regex": ("regex", "(Paris|Rome)", "Paris"),
    "extract_schema": (
        "json_schema",
        EXTRACT,
        json.dumps({"name": "Bruno", "age": 40, "city": "Mexico City"}),
    ),
    "person_schema": ("json_schema", PERSON, json.dumps({"name": "Bruno", "age": 40})),
    "weather_schema": ("json_schema", WEATHER, json.dumps({"city": "Paris", "days": 3})),
    "string_max_length_20": ("json_schema", {"type": "string", "maxLength": 20}, '"hello world"'),
    "json_object": ("json_schema", {"type": "object"}, json.dumps({"a": [1, 2], "b": "c"})),
    "pathological_nested_repeat": ("regex", "(c{1,400}){1,400}", "c" * 50),
    "pathological_alternation": ("regex", "(a|aa)*b(c{1,1000}){1,1000}", "aab" + "c" * 20),
}


def vocab_dir(name: str, cache: Path) -> Path:
    if name == "demo":
        return ROOT / "nanolang/demo/model"
    path = cache / "bpe32k"
    if not (path / "tokenizer.json").exists():
        sys.path.insert(0, str(ROOT))
        from runtime.tiny import train_tokenizer

        texts = [p.read_text(errors="ignore") for p in Path(json.__file__).parents[1].rglob("*.py")]
        train_tokenizer(texts, 32_000).save_pretrained(str(path))
    return path


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


# ---------------------------------------------------------------- one measurement (child)


def measure(backend: str, vocab: Path, case: str) -> dict[str, Any]:
    kind, constraint, example = CASES[case]
    text = constraint if kind == "regex" else json.dumps(constraint)
    tok = load_tokenizer(vocab)
    path = tok.encode(example, add_special_tokens=False)
    run = {"outlines-core": _outlines, "xgrammar": _xgrammar, "llguidance": _llguidance}[backend]
    compile_s, masks = run(tok, kind, text, path)
    return {
        "compile_s": compile_s,
        "mask_us_mean": statistics.fmean(masks) * 1e6 if masks else None,
        "mask_us_max": max(masks) * 1e6 if masks else None,
        "engine_mask_us_mean": statistics.fmean(ENGINE_MASKS) * 1e6 if ENGINE_MASKS else None,
        "tokens_walked": len(masks),
        "vocab_size": len(tok),
    }


def _outlines(tok: Any, kind: str, text: str, path: list[int]) -> tuple[float, list[float]]:
    import torch
    from outlines_core import Guide, Index
    from outlines_core.json_schema import build_regex_from_schema

    vocabulary = outlines_vocabulary(tok)
    start = time.perf_counter()
    pattern = text if kind == "regex" else build_regex_from_schema(text)
    guide = Guide(Index(pattern, vocabulary))
    compile_s = time.perf_counter() - start
    masks = []
    for token in path:
        t = time.perf_counter()
        mask = torch.zeros(len(tok), dtype=torch.bool)
        mask[[i for i in guide.get_tokens() if i < len(tok)]] = True
        masks.append(time.perf_counter() - t)
        guide.advance(token)
    return compile_s, masks


def outlines_vocabulary(tok: Any) -> Any:
    """outlines-core's byte-level vocabulary of a byte-level BPE tokenizer (non-special tokens)."""
    from outlines_core import Vocabulary

    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    decoder = {chr(c): b for b, c in zip(bs, cs, strict=True)}
    special = set(tok.all_special_ids) | set(tok.added_tokens_decoder)
    mapping: dict[bytes, list[int]] = {}
    for token, idx in tok.get_vocab().items():
        if idx in special or any(ch not in decoder for ch in token):
            continue
        mapping.setdefault(bytes(decoder[ch] for ch in token), []).append(idx)
    return Vocabulary(tok.eos_token_id, mapping)


def _xgrammar(tok: Any, kind: str, text: str, path: list[int]) -> tuple[float, list[float]]:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    start = time.perf_counter()
    if kind == "regex":
        compiled = compiler.compile_regex(text)
    else:
        compiled = compiler.compile_json_schema(text, any_whitespace=False)
    compile_s = time.perf_counter() - start
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)
    masks = []
    for token in path:
        t = time.perf_counter()
        matcher.fill_next_token_bitmask(bitmask)
        masks.append(time.perf_counter() - t)
        if not matcher.accept_token(token):
            raise RuntimeError(f"xgrammar refused token {token}")
    return compile_s, masks


def _llguidance(tok: Any, kind: str, text: str, path: list[int]) -> tuple[float, list[float]]:
    sys.path.insert(0, str(ROOT))
    from runtime.constraints import ConstraintCompiler, ConstraintLimits, ConstraintSpec

    limits = ConstraintLimits(max_regex_size=10**12, compile_seconds=3600.0)
    compiler = ConstraintCompiler(tok, tok.eos_token_id, len(tok), limits)
    spec = ConstraintSpec(kind, text)
    start = time.perf_counter()
    compiler.prepare(spec)
    constraint = compiler.compile(*(text if k == kind else None for k in KINDS))
    compile_s = time.perf_counter() - start
    masks = []
    for token in path:
        t = time.perf_counter()
        constraint.matcher.compute_bitmask()  # the library's own cost (a packed bitmask)
        masks.append(time.perf_counter() - t)
        t = time.perf_counter()
        constraint.allowed_mask()  # what the engine calls: bitmask to a bool row
        ENGINE_MASKS.append(time.perf_counter() - t)
        constraint.advance(token)
        if constraint.error is not None:
            raise RuntimeError(f"llguidance: {constraint.error}")
    return compile_s, masks


# ---------------------------------------------------------------- driver


def run_cases(backend: str, vocab: Path, cases: list[str], timeout_s: float) -> list[dict]:
    """Measure ``cases`` in one child process, one JSON line each; a case over ``timeout_s``
    kills the child (recorded as a timeout) and a fresh child takes the remaining cases."""
    results: list[dict[str, Any]] = []
    while len(results) < len(cases):
        todo = cases[len(results) :]
        cmd = [sys.executable, __file__, "--child", backend, str(vocab), ",".join(todo)]
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert child.stdout is not None
        ready = [child.stdout]
        for _ in todo:
            if not select.select(ready, [], [], timeout_s)[0]:
                child.kill()
                results.append({"status": "timeout", "timeout_s": timeout_s})
                break
            line = child.stdout.readline()
            if not line:
                results.append({"status": "error", "error": f"child exited {child.wait()}"})
                break
            results.append(json.loads(line))
        child.kill()
        child.wait()
    return results


def child(backend: str, vocab: Path, cases: list[str]) -> None:
    load_tokenizer(vocab)  # imports before the first timed case
    for case in cases:
        try:
            row = {"status": "ok", **measure(backend, vocab, case)}
        except Exception as exc:  # a backend refusing a constraint is a result too
            row = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=False)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--vocabs", default="demo,bpe32k")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache/structured-bench")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--update", action="store_true", help="replace only these backends' rows in --out"
    )
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "VOCAB_DIR", "CASES"))
    args = parser.parse_args()
    if args.child:
        backend, vocab, cases = args.child
        child(backend, Path(vocab), cases.split(","))
        return
    rows = []
    for name in args.vocabs.split(","):
        vocab = vocab_dir(name, args.cache)
        for backend in args.backends.split(","):
            results = run_cases(backend, vocab, list(CASES), args.timeout)
            for case, result in zip(CASES, results, strict=True):
                row = {"vocab": name, "case": case, "backend": backend, **result}
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {
        "command": " ".join(sys.argv),
        "device": f"CPU ({platform.processor() or platform.machine()}), shared 2-core machine",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "compile_s: constraint text to a ready matcher (xgrammar's cache off; "
        "llguidance through runtime.constraints with the limits lifted); mask_us: one "
        "next-token mask along a valid output's tokens (outlines-core: allowed ids to a bool "
        "row; xgrammar: its bitmask fill; llguidance: its packed bitmask, and "
        "engine_mask_us: runtime's allowed_mask, bitmask to a bool row). A case over --timeout "
        "seconds is killed and recorded as a timeout.",
        "cases": {k: {"kind": v[0], "constraint": v[1], "walked": v[2]} for k, v in CASES.items()},
        "rows": rows,
    }
    if args.out and args.update and args.out.exists():
        old = json.loads(args.out.read_text())
        kept = [r for r in old["rows"] if r["backend"] not in args.backends.split(",")]
        result["rows"] = kept + rows
        result["command"] = f"{old['command']}; then {result['command']}"
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
