"""Draws the one-layer timeline PNG and prints the sweep and per-step tables (Markdown) from the
JSON written by bench/nanoflow_layer.py; docs/performance.md pastes this output.

    python bench/nanoflow_report.py SWEEP.json TIMELINE.json docs/nanoflow-timeline.png
    python bench/nanoflow_report.py --gains BENCH.json   # nanoflow / sequential per workload
    python bench/nanoflow_report.py --searched TIMELINE.json PNG  # runtime.tune.verify --timeline
    python bench/nanoflow_report.py --predicted PROFILE.json DECODES PREFILL CONTEXT PNG
        # the search's best pipeline for one batch shape against dense, as the cost model
        # predicts them from a profile (two layers of the steady state)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GEMMS = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
COLORS = {"gemm": "#4C72B0", "attention": "#DD8452", "other": "#8C8C8C"}


def kind(op: str) -> str:
    return "gemm" if op in GEMMS else "attention" if op == "attention" else "other"


def sweep_table(sweep: dict[str, Any]) -> str:
    lines = ["| batch | plan | SMs (partition: count) | ms per 32-layer forward | vs dense |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for key, rows in sweep.items():
        if not isinstance(rows, list):
            continue
        dense = rows[0]["ms"]
        for r in rows:
            if "ms" not in r:
                lines.append(f"| {key} | {r['plan']} | - | failed: {r.get('error')} | - |")
                continue
            sms = ", ".join(f"{k}: {v or 'all'}" for k, v in r.get("sms", {}).items()) or "-"
            lines.append(f"| {key} | {r['plan']} | {sms} | {r['ms']:.2f} | "
                         f"{dense / r['ms']:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def step_table(tl: dict[str, Any]) -> str:
    lines = ["| step | sequential ms | nanoflow ms |", "| --- | --- | --- |"]
    seq, nano = tl["sequential"]["steps"], tl["nanoflow"]["steps"]
    dur = {(s["op"], s["nano_batch"]): s["end_ms"] - s["start_ms"] for s in nano}
    for s in seq:
        key = (s["op"], s["nano_batch"])
        lines.append(f"| {s['op']}#{s['nano_batch']} | {s['end_ms'] - s['start_ms']:.3f} | "
                     f"{dur.get(key, float('nan')):.3f} |")  # fmt: skip
    return "\n".join(lines)


def draw(tl: dict[str, Any], meta: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(12, 4.8), sharex=True)
    for ax, mode in zip(axes, ("sequential", "nanoflow"), strict=True):
        d = tl[mode]
        for s in d["steps"]:
            y = s["partition"]
            ax.barh(y, s["end_ms"] - s["start_ms"], left=s["start_ms"], height=0.6,
                    color=COLORS[kind(s["op"])], edgecolor="black", linewidth=0.4)  # fmt: skip
            if s["end_ms"] - s["start_ms"] > 0.03:
                ax.text((s["start_ms"] + s["end_ms"]) / 2, y, f"{s['op'][:6]}#{s['nano_batch']}",
                        ha="center", va="center", fontsize=6, color="white")  # fmt: skip
        sms = d["sms"]
        ticks = sorted({s["partition"] for s in d["steps"]})
        ax.set_yticks(ticks, [f"partition {p}\n({sms.get(str(p)) or 132} SMs)" for p in ticks])
        ax.set_title(f"{mode}: {d['plan']}", fontsize=9)
    axes[-1].set_xlabel("ms from the layer's first step (CUDA events in a replayed CUDA graph)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    fig.legend(handles, list(COLORS), loc="upper right", fontsize=8)
    fig.suptitle(f"Llama-3-8B layer {meta['layer']}, {meta['decodes']} decodes x context "
                 f"{meta['context']}, {meta['device']}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=130)


def draw_searched(tl: dict[str, Any], out: Path) -> None:
    """The searched plan's layer against the dense layer (runtime.tune.verify --timeline): one
    row for attention and one for everything else, so two streams of one partition show too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(12, 4.4), sharex=True)
    b = tl["bucket"]
    for ax, key in zip(axes, ("dense", "plan"), strict=True):
        d = tl[key]
        for s in d["steps"]:
            y = 1 if s["op"] == "attention" else 0
            ax.barh(y, s["end_ms"] - s["start_ms"], left=s["start_ms"], height=0.6,
                    color=COLORS[kind(s["op"])], edgecolor="black", linewidth=0.4)  # fmt: skip
            if s["end_ms"] - s["start_ms"] > 0.04:
                ax.text((s["start_ms"] + s["end_ms"]) / 2, y, f"{s['op'][:6]}#{s['nano_batch']}",
                        ha="center", va="center", fontsize=6, color="white")  # fmt: skip
        span = max(s["end_ms"] for s in d["steps"])
        sms = ", ".join(f"partition {k}: {v or 'all'} SMs" for k, v in d["sms"].items())
        ax.set_yticks([0, 1], ["GEMMs, norms, rope, KV store", "attention"])
        ax.set_title(f"{key}: {d['plan']} ({sms}); layer spans {span:.3f} ms", fontsize=9)
    axes[-1].set_xlabel("ms from the layer's first step (CUDA events in a replayed CUDA graph)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    fig.legend(handles, list(COLORS), loc="upper right", fontsize=8)
    fig.suptitle(f"Llama-3-8B layer {tl['layer']}: {b['decodes']} decodes + {b['prefill_tokens']} "
                 f"prefill rows, context {b['context']}; 32-layer forward {b['dense_measured_ms']}"
                 f" ms dense, {b['plan_measured_ms']} ms with the plan ({tl['device']})",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=130)


def draw_predicted(profile_path: Path, decodes: int, prefill: int, context: int, out: Path) -> str:
    """Two layers of the best pipeline the search finds for one shape (even if dense wins) and
    of the dense layer, from the profile's measured costs; returns a one-line summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runtime.tune import BatchShape, Profile, SearchConfig, search_shape
    from runtime.tune.costs import DENSE, SEGMENTS, Costs

    prof = Profile.load(profile_path)
    shape = BatchShape(decodes, prefill, context)
    r = search_shape(prof, shape, SearchConfig(margin=0.0))
    costs, rows = Costs(prof, shape), shape.tokens
    color = {"pre": COLORS["other"], "att": COLORS["attention"], "post": COLORS["gemm"]}
    fig, axes = plt.subplots(2, 1, figsize=(12, 4.0), sharex=True)
    t = 0.0
    for layer in range(3):
        for seg in SEGMENTS:
            d = costs.us(DENSE, seg, 0, rows) / 1e3
            y = 1 if seg == "att" else 0
            axes[0].barh(y, d, left=t, height=0.6, color=color[seg], edgecolor="black", lw=0.4)
            axes[0].text(t + d / 2, y, f"{seg} L{layer}", ha="center", va="center", fontsize=6,
                         color="white")  # fmt: skip
            t += d
    dense_ms = costs.dense_layer_us() / 1e3
    axes[0].set_title(f"dense: {dense_ms:.3f} ms per layer", fontsize=9)
    s = r.schedule
    summary = f"dense {r.dense_us / 1e3:.2f} ms per forward"
    if s is not None:
        period = s.period_us / 1e3
        for rnd in range(3):  # round r runs layer r + shift of each segment
            for (k, seg), tau in s.tau.items():
                start = rnd * period + tau / 1e3
                d = s.durations[k, seg] / 1e3
                y = 1 if seg == "att" else 0
                axes[1].barh(y, d, left=start, height=0.6, color=color[seg], edgecolor="black",
                             lw=0.4)  # fmt: skip
                axes[1].text(start + d / 2, y, f"{seg}#{k} L{rnd + s.shift[k, seg]}",
                             ha="center", va="center", fontsize=6, color="white")  # fmt: skip
        sizes = "+".join(str(b - a) for a, b in s.bounds)
        title = (f"best pipeline: {sizes} rows on {s.layout.name}, period {period:.3f} ms per "
                 "layer (charged the measured interference)")  # fmt: skip
        axes[1].set_title(title, fontsize=9)
        forward = s.forward_us(prof.shape.num_layers) / 1e3
        summary += f", best pipeline {forward:.2f} ms"
    for ax in axes:
        ax.set_yticks([0, 1], ["GEMMs, norms, rope, KV store", "attention"])
    axes[-1].set_xlabel("ms (predicted by the cost model from measured per-operation times)")
    fig.suptitle(f"Llama-3-8B, {decodes} decodes + {prefill} prefill rows, context {context}: "
                 f"predicted from the {prof.device} profile of {prof.created[:10]}",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    return summary


def gains_table(records: list[dict[str, Any]]) -> str:
    by = {(r["mode"], r["workload"]): r for r in records}
    head = (
        "| workload | sequential tok/s | nanoflow tok/s | nanoflow / sequential | "
        "% tight roofline (sequential / nanoflow) |"
    )
    lines = [head, "| --- | --- | --- | --- | --- |"]
    for (mode, w), s in by.items():
        n = by.get(("nanoflow", w))
        if mode != "sequential" or n is None:
            continue
        a, b = s["total_tokens_per_s"], n["total_tokens_per_s"]
        lines.append(f"| {w} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | "
                     f"{s['pct_tight_roofline']} / {n['pct_tight_roofline']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1] == "--predicted":
        a = sys.argv[2:]
        print(draw_predicted(Path(a[0]), int(a[1]), int(a[2]), int(a[3]), Path(a[4])))
        return
    if sys.argv[1] == "--searched":
        draw_searched(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
        return
    if sys.argv[1] == "--gains":
        print(gains_table(json.loads(Path(sys.argv[2]).read_text())))
        return
    sweep = json.loads(Path(sys.argv[1]).read_text())
    tl_doc = json.loads(Path(sys.argv[2]).read_text())
    tl = tl_doc["graph"]
    draw(tl, tl_doc, Path(sys.argv[3]))
    print(sweep_table(sweep), "\n")
    print(step_table(tl))


if __name__ == "__main__":
    main()
