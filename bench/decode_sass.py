"""What the decode kernels compile to on Hopper, without a GPU: SASS opcode counts per variant.

Compiles ``decode_kernel`` (gather, plain and swapped MMA) and ``decode_tma_kernel`` for sm_90 with
``triton.compile`` (the PyPI wheel carries the NVIDIA backend, ptxas and nvdisasm), over a bf16
query and a float8 (e4m3) cache, for every ``DecodeConfig.fp8_dot`` the kernel takes, and counts
the opcodes that matter for the fp8 path: conversions (F2F, F2FP), MMAs (HMMA, HGMMA, QGMMA),
loads and copies. Counts are of the whole kernel's static code, not of executed instructions.
Llama-3-8B's shape (32 / 8 heads, dim 128, page 16). Usage (repo root, any machine):
``PYTHONPATH=. python bench/decode_sass.py --out bench/results/decode_sass.json``
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels.triton.decode_attention import decode_kernel
from kernels.triton.decode_attention_tma import decode_tma_kernel

TARGET = GPUTarget("cuda", 90, 32)
KEEP = ("F2F", "HMMA", "HGMMA", "QGMMA", "LDG", "LDS", "UTMALDG", "MUFU")
POINTERS = {
    "q_ptr": "*bf16", "k_cache_ptr": "*fp8e4nv", "v_cache_ptr": "*fp8e4nv",
    "block_tables_ptr": "*i32", "context_lens_ptr": "*i32", "out_ptr": "*bf16",
    "part_out_ptr": "*fp32", "part_lse_ptr": "*fp32", "scale_log2": "fp32", "v_scale": "fp32",
    "k_desc": "tensordesc<fp8e4nv[16, 128]>", "v_desc": "tensordesc<fp8e4nv[16, 128]>",
}  # fmt: skip
SHAPE = {"GROUP": 4, "GROUP_PAD": 16, "HEAD_DIM": 128, "PAGE": 16, "SPLIT": True,
         "PRECISION": "tf32", "ORDERED": False, "USE_PDL": False}  # fmt: skip
# (label, kernel, constexprs, warps, dot dtypes)
VARIANTS: list[tuple[str, Any, dict[str, Any], int, tuple[str, ...]]] = [
    ("gather 64/4/4", decode_kernel, {"BLOCK_N": 64, "STAGES": 4, "SWAP_AB": False}, 4,
     ("q", "fp16")),
    ("gather 64/4/3, swapped MMA", decode_kernel, {"BLOCK_N": 64, "STAGES": 3, "SWAP_AB": True}, 4,
     ("q", "fp16", "fp8")),
    ("TMA 32/1/2 (two pages a step)", decode_tma_kernel,
     {"TWO_PAGES": True, "STAGES": 2, "IDS_BLOCK": 0}, 1, ("q", "fp16")),
    ("TMA 32/1/3, ids preloaded 64", decode_tma_kernel,
     {"TWO_PAGES": True, "STAGES": 3, "IDS_BLOCK": 64}, 1, ("q", "fp16")),
]  # fmt: skip


def compile_sm90(kernel: Any, consts: dict[str, Any], warps: int) -> Any:
    """The kernel compiled for sm_90, pointers and strides specialised as 16-divisible (as the
    launcher does for the engine's tensors)."""
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in consts:
            signature[name] = "constexpr"
            constexprs[(i,)] = consts[name]
            continue
        signature[name] = POINTERS.get(name, "i32")
        if signature[name].startswith("*") or name.startswith("stride"):
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=TARGET, options={"num_warps": warps})


def opcodes(cubin: bytes) -> collections.Counter[str]:
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([str(tools / "nvdisasm"), "-c", f.name], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass)
    return collections.Counter(ops)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for label, kernel, consts, warps, dots in VARIANTS:
        for dot in dots:
            compiled = compile_sm90(kernel, {**SHAPE, **consts, "DOTS": dot}, warps)
            ops = opcodes(compiled.asm["cubin"])
            kept = dict(sorted((o, n) for o, n in ops.items() if o.startswith(KEEP)))
            row = {"kernel": label, "warps": warps, "fp8_dot": dot,
                   "sass_total": sum(ops.values()), "sass": kept}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    report = {
        "target": "sm_90 (compiled on the CPU, no GPU)", "triton": triton.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "PYTHONPATH=. python " + " ".join(sys.argv), "shape": SHAPE, "rows": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
