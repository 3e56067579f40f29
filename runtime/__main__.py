"""``python -m runtime [PROMPT ...]``: generate with the engine (a tiny local model by default)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from runtime.llm import LLM
from runtime.sampling_params import SamplingParams
from runtime.tiny import default_model_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime", description=__doc__)
    ap.add_argument("prompts", nargs="*", default=["The quick brown fox", "Programs ask"])
    ap.add_argument("--model", help="model directory or preset (default: a tiny local model)")
    ap.add_argument("--load-format", default="auto", choices=["auto", "safetensors", "dummy"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    model = args.model or str(default_model_dir())
    try:
        llm = LLM(model, dtype=args.dtype, device=args.device, load_format=args.load_format)
        params = SamplingParams(
            max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
        )
        start = time.perf_counter()
        outs = llm.generate(args.prompts, params)
    except (ValueError, OSError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for out in outs:
        print(
            json.dumps({"prompt": out.prompt, "text": out.text, "finish_reason": out.finish_reason})
        )
    tokens = sum(len(o.token_ids) for o in outs)
    print(f"{tokens} tokens in {elapsed:.2f} s on {llm.engine.device}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
