"""Peers in the benchmark run: the subprocess plumbing, request identity, records and tables.

The real peers (vLLM, SGLang) run only on the GPU machine; here a stand-in ``vllm`` package on a
``--peer-site`` checks the plumbing: the worker gets the benchmark's exact requests and its
records carry the engine, version and workload next to nanolang's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.bench.__main__ import execute, run_peers
from runtime.bench.options import build_parser
from runtime.bench.peers import (
    CONTEXT_MARGIN,
    PeerRun,
    check_engine_args,
    hf_config_dir,
    max_model_len,
    parse_peers,
    parse_sites,
    run_peer,
)
from runtime.bench.table import comparison_table
from runtime.bench.workloads import (
    WARMUP_OUTPUT_TOKENS,
    WORKLOADS,
    make_requests,
    warmup_requests,
    workload_seed,
)

FAKE_VLLM = """
import json, os

class SamplingParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)

class _Out:
    def __init__(self, n):
        self.token_ids = list(range(n))

class _Req:
    def __init__(self, n):
        self.outputs = [_Out(n)]

class _Stats:
    def __init__(self, **kw):
        self.__dict__.update(kw)

class _Loggers:
    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None):
        pass

class _Engine:
    def __init__(self, log_stats):
        if log_stats:
            self.logger_manager = _Loggers()

class LLM:
    def __init__(self, **kw):
        self.kw = kw
        self.llm_engine = _Engine(kw.get("disable_log_stats") is False)

    def generate(self, prompts, params, use_tqdm=False):
        manager = getattr(self.llm_engine, "logger_manager", None)
        if manager is not None:  # two iterations: all running, then half of them and a preemption
            manager.record(_Stats(num_running_reqs=len(prompts)), _Stats(num_preempted_reqs=0))
            manager.record(_Stats(num_running_reqs=len(prompts) // 2), _Stats(num_preempted_reqs=1))
        with open(os.environ["FAKE_VLLM_LOG"], "a") as f:
            f.write(json.dumps({"engine_kwargs": {k: v for k, v in self.kw.items()},
                                "env": {k: os.environ.get(k) for k in
                                        ("NCCL_NVLS_ENABLE", "VLLM_ALLREDUCE_USE_SYMM_MEM")},
                                "prompts": [p["prompt_token_ids"] for p in prompts],
                                "max_tokens": [p.max_tokens for p in params]}) + "\\n")
        with open(os.environ["FAKE_VLLM_LOG"]) as f:
            calls = len(f.read().splitlines())
        if str(calls) == os.environ.get("FAKE_VLLM_DIE_AT_CALL"):
            os._exit(3)
        if str(calls) == os.environ.get("FAKE_VLLM_HANG_AT_CALL"):  # with a worker of its own
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            with open(os.environ["FAKE_VLLM_LOG"] + ".child", "w") as f:
                f.write(str(child.pid))
            time.sleep(600)
        return [_Req(p.max_tokens) for p in params]
"""


# SGLang's scheduler runs in a process of its own and logs its batches to the standard error it
# inherited; this stand-in does the same from a child process in every generate call
FAKE_SGLANG = """
import subprocess, sys

class Engine:
    def __init__(self, **kw):
        self.kw = kw

    def get_server_info(self):  # as SGLang 0.5.17 answers: the running cap in its state
        return {"max_total_num_tokens": 4096, "chunked_prefill_size": 512,
                "internal_states": [{"effective_max_running_requests_per_dp": 64}]}

    def generate(self, input_ids, sampling_params):
        n = len(input_ids)
        lines = [f"Prefill batch, #new-seq: {n}, #running-req: 0, #queue-req: 0",
                 f"Decode batch, #running-req: {n}, #token: 99, token usage: 0.01",
                 "KV cache pool is full. Retract requests. #retracted_reqs: 2, #new_tokens: 5",
                 f"Decode batch, #running-req: {n - 1}, #token: 99, token usage: 0.01"]
        code = "import sys; sys.stderr.write(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, "\\n".join(lines) + "\\n"], check=True)
        return [{"output_ids": list(range(p["max_new_tokens"]))} for p in sampling_params]
"""


# the dataclasses each peer declares its engine's keyword arguments in (a few real fields)
FAKE_ARGS = {
    "vllm": ("engine/arg_utils.py", "EngineArgs",
             ["max_num_seqs", "tensor_parallel_size", "gpu_memory_utilization"]),
    "sglang": ("srt/server_args.py", "ServerArgs",
               ["tp_size", "cuda_graph_max_bs_decode", "cuda_graph_max_bs_prefill"]),
}  # fmt: skip


def _fake_site(root: Path, engine: str = "vllm") -> Path:
    site = root / f"site-{engine}"
    (site / engine).mkdir(parents=True)
    (site / engine / "__init__.py").write_text(FAKE_VLLM if engine == "vllm" else FAKE_SGLANG)
    path, name, fields = FAKE_ARGS[engine]
    module = site / engine / path
    module.parent.mkdir(parents=True, exist_ok=True)
    (module.parent / "__init__.py").touch()
    body = "".join(f"    {f}: int = 0\n" for f in fields)
    module.write_text(f"import dataclasses\n@dataclasses.dataclass\nclass {name}:\n{body}")
    dist = site / f"{engine}-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {engine}\nVersion: 9.9.9\n")
    return site


def _fake_vllm_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the fake vLLM appends each call to (one JSON line per generate call)."""
    log = tmp_path / "vllm.log"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    return log


def test_peer_runs_the_same_requests_in_the_same_run(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_vllm_log(tmp_path, monkeypatch)
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "lmsys:2,512/512", "--num-requests", "3", "--scale", "0.02",
        "--peer", "vllm,sglang", "--peer-site", f"vllm={_fake_site(tmp_path)}",
        "--peer-args", '{"vllm": {"max_num_seqs": 512}}', "--out", str(out),
    ])  # fmt: skip
    assert execute(args, "test") == 0
    records = json.loads(out.read_text())
    assert [(r["engine"], r["workload"]) for r in records] == [
        ("nanolang", "lmsys"),
        ("nanolang", "512/512"),
        ("vllm 9.9.9", "lmsys"),
        ("vllm 9.9.9", "512/512"),
    ]  # fmt: skip  (sglang is not importable here: skipped)
    ours, peer = records[:2], records[2:]
    counts = [2, 3]  # lmsys has its own request count, 512/512 the default
    for a, b, n in zip(ours, peer, counts, strict=True):
        assert b["version"] == "9.9.9" and a["num_requests"] == b["num_requests"] == n
        assert (a["prompt_tokens"], a["output_tokens"]) == (b["prompt_tokens"], b["output_tokens"])
        assert {"device", "date", "command", "total_tokens_per_s"} <= set(b)
        assert b["engine_args"] == {"max_num_seqs": 512}
        assert "max_batch_seqs" not in b  # the peer at its defaults: statistics off
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    vocab = json.loads((Path(tiny_llama) / "config.json").read_text())["vocab_size"]
    for call, name, n in zip(calls, ["lmsys", "512/512"], counts, strict=True):
        want = make_requests(WORKLOADS[name], n, vocab, workload_seed(name), 0.02)
        assert call["prompts"] == [r.prompt_token_ids for r in want]
        assert call["engine_kwargs"]["load_format"] == "dummy"
        assert call["engine_kwargs"]["kv_cache_dtype"] == "auto"
        assert "disable_log_stats" not in call["engine_kwargs"]
    table = comparison_table(records)
    assert "| lmsys (2) |" in table and "| 512/512 (3) |" in table and "vllm 9.9.9" in table


def test_vllms_largest_batch_comes_from_its_iteration_statistics(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_vllm_log(tmp_path, monkeypatch)
    jobs = [{"workload": w, "num_requests": n, "seed": workload_seed(w), "scale": 0.02}
            for w, n in (("lmsys", 4), ("512/512", 2))]  # fmt: skip
    run = PeerRun("vllm", "auto", str(_fake_site(tmp_path)), {}, 1)
    records = run_peer(run, Path(tiny_llama), jobs, 256, batch_stats=True)
    # the fake's iterations: all requests running, then half of them and one preemption
    assert [(r["max_batch_seqs"], r["preemptions"]) for r in records] == [(4, 1), (2, 1)]
    assert records[0]["max_batch_source"].startswith("vllm scheduler statistics")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(c["engine_kwargs"]["disable_log_stats"] is False for c in calls)


def test_peer_options_are_checked(tmp_path: Path) -> None:
    assert parse_peers("vllm, hf") == ["vllm", "hf"] and parse_peers("none") == []
    with pytest.raises(ValueError, match="unknown peer"):
        parse_peers("trtllm")
    assert parse_sites(["sglang=/tmp/x"]) == {"sglang": "/tmp/x"}
    with pytest.raises(ValueError, match="ENGINE=DIR"):
        parse_sites(["/tmp/x"])


def test_a_peer_argument_the_peer_does_not_take_fails_before_any_engine_runs(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SGLang 0.5.17 calls its decode graph limit cuda_graph_max_bs_decode: the old name failed
    only when its worker started, after nanolang's workloads had used the device (172 s on
    2026-11-30). Now the benchmark asks the peer's argument dataclass first and stops at once."""
    log = _fake_vllm_log(tmp_path, monkeypatch)
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "lmsys:2", "--scale", "0.02", "--peer", "vllm,sglang",
        "--peer-site", f"vllm={_fake_site(tmp_path)}",
        "--peer-site", f"sglang={_fake_site(tmp_path, 'sglang')}",
        "--peer-args", '{"sglang": {"cuda_graph_max_bs": 1024}, "vllm": {"max_num_seqs": 8}}',
        "--out", str(out),
    ])  # fmt: skip
    with pytest.raises(SystemExit, match=r"sglang 9\.9\.9 takes no argument cuda_graph_max_bs "
                       r"\(did you mean cuda_graph_max_bs_decode"):  # fmt: skip
        execute(args, "test")
    assert not out.exists() and not log.exists()  # neither nanolang nor a peer ran


def test_peer_arguments_the_peers_take_pass_the_check(tmp_path: Path) -> None:
    vllm = PeerRun("vllm", "auto", str(_fake_site(tmp_path)), {"max_num_seqs": 8}, 2)
    assert check_engine_args(vllm) is None  # and tensor_parallel_size, from the TP degree
    sglang = PeerRun("sglang", "fp8", str(_fake_site(tmp_path, "sglang")), {}, 1)
    assert check_engine_args(sglang) is None  # nothing to check: no import at all
    bad = PeerRun("sglang", "auto", sglang.site, {"tp": 2}, 1)
    message = check_engine_args(bad)
    assert message is not None and "takes no argument tp" in message
    # a peer whose arguments live elsewhere (another version) is not refused: its run decides
    other = _fake_site(tmp_path / "other")
    (other / "vllm" / "engine" / "arg_utils.py").unlink()
    assert check_engine_args(PeerRun("vllm", "auto", str(other), {"max_num_seqs": 8}, 1)) is None


def test_preset_becomes_a_config_directory(tmp_path: Path) -> None:
    d = hf_config_dir("llama-3-8b", {"num_hidden_layers": 2}, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 2
    jobs = [{"workload": "splitwise", "num_requests": 50, "seed": 6, "scale": 1.0}]
    longest = max(
        len(r.prompt_token_ids) + r.output_len
        for r in make_requests(WORKLOADS["splitwise"], 50, 1000, 6)
    )
    assert longest + CONTEXT_MARGIN <= max_model_len(jobs, 1000, 8192) < longest + 256 + 16
    # a sum on a multiple of 256 still gets its margin (SGLang stopped 2 tokens short at 1,536)
    fixed = [{"workload": "1024/512", "num_requests": 4, "seed": 2, "scale": 1.0}]
    assert max_model_len(fixed, 1000, 8192) == 1792
    assert max_model_len(fixed, 1000, 1536) == 1536  # the model's limit still caps it


def test_peers_run_at_every_tp_degree_and_keep_finished_workloads(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tp 1,2``: the peer runs at each degree (vLLM's own argument name); a peer that dies
    midway keeps its finished workloads in the output, and the multicast-off variables reach it."""
    log = _fake_vllm_log(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_VLLM_DIE_AT_CALL", "4")  # the second run's second workload
    monkeypatch.delenv("NCCL_NVLS_ENABLE", raising=False)
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "lmsys:2,512/512:2", "--scale", "0.02", "--tp", "1,2",
        "--peer", "vllm", "--peer-site", f"vllm={_fake_site(tmp_path)}", "--out", str(out),
    ])  # fmt: skip
    names = [("lmsys", 2), ("512/512", 2)]
    records = run_peers(args, names, "test", [])
    assert [(r["workload"], r["tensor_parallel_size"]) for r in records] == [
        ("lmsys", 1), ("512/512", 1), ("lmsys", 2),
    ]  # the fourth call died: its workload is missing, the others are kept
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["engine_kwargs"].get("tensor_parallel_size") for c in calls] == [None, None, 2, 2]
    assert all(c["env"]["NCCL_NVLS_ENABLE"] == "0" for c in calls)
    assert all(c["env"]["VLLM_ALLREDUCE_USE_SYMM_MEM"] == "0" for c in calls)
    assert json.loads(out.read_text()) == records  # written after each peer run
    left = out.with_name("bench.vllm-tp2-auto.partial.json")
    assert not left.exists()  # folded into the output once the run ended


def test_partial_file_has_the_finished_workloads_of_a_stopped_peer(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_vllm_log(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_VLLM_DIE_AT_CALL", "2")
    jobs = [{"workload": w, "num_requests": 2, "seed": workload_seed(w), "scale": 0.02}
            for w in ("lmsys", "512/512")]  # fmt: skip
    partial = tmp_path / "p.json"
    run = PeerRun("vllm", "auto", str(_fake_site(tmp_path)), {}, 2)
    records = run_peer(run, Path(tiny_llama), jobs, 256, partial)
    assert [r["workload"] for r in records] == ["lmsys"]
    assert json.loads(partial.read_text()) == records
    assert records[0]["engine_args"] == {"tensor_parallel_size": 2}


def test_peer_tp_argument_names() -> None:
    assert PeerRun("sglang", "auto", None, {}, 2).job_engine_args() == {"tp_size": 2}
    assert PeerRun("vllm", "auto", None, {"max_num_seqs": 8}, 1).job_engine_args() == {
        "max_num_seqs": 8
    }
    # --peer-args wins over --tp
    assert PeerRun("vllm", "auto", None, {"tensor_parallel_size": 4}, 2).job_engine_args() == {
        "tensor_parallel_size": 4
    }


def test_peers_first_run_before_nanolang(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_vllm_log(tmp_path, monkeypatch)
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "512/512:2", "--scale", "0.02", "--peer", "vllm",
        "--peer-site", f"vllm={_fake_site(tmp_path)}", "--peers-first", "--out", str(out),
    ])  # fmt: skip
    assert execute(args, "test") == 0
    records = json.loads(out.read_text())
    assert [r["engine"] for r in records] == ["vllm 9.9.9", "nanolang"]
    assert records[0]["prompt_tokens"] == records[1]["prompt_tokens"]


def test_comparison_uses_nanolangs_fastest_engine_without_a_plain_one() -> None:
    def rec(engine: str, mode: str | None, tps: float) -> dict[str, object]:
        r: dict[str, object] = {"engine": engine, "workload": "1024/512", "num_requests": 8,
                                "total_tokens_per_s": tps, "tensor_parallel_size": 2}  # fmt: skip
        if mode:
            r["mode"] = mode
        return r

    table = comparison_table([
        rec("vllm 0.26.0", None, 100.0), rec("nanolang", "nanoflow", 120.0),
        rec("nanolang", "sequential", 110.0),
    ])  # fmt: skip
    assert "vllm 0.26.0 TP=2" in table and "nanolang (nanoflow) TP=2" in table
    assert table.splitlines()[-1].endswith("| 1.20x |")


def test_a_hung_peer_is_killed_with_its_workers_at_the_timeout(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_vllm_log(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_VLLM_HANG_AT_CALL", "2")
    jobs = [{"workload": w, "num_requests": 2, "seed": workload_seed(w), "scale": 0.02}
            for w in ("lmsys", "512/512")]  # fmt: skip
    run = PeerRun("vllm", "auto", str(_fake_site(tmp_path)), {}, 1)
    start = time.monotonic()
    records = run_peer(run, Path(tiny_llama), jobs, 256, tmp_path / "p.json", timeout=12.0)
    assert time.monotonic() - start < 60
    assert [r["workload"] for r in records] == ["lmsys"]
    child = int(Path(str(log) + ".child").read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)  # the peer's own worker went with it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent's parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_peer_warms_up_on_the_requests_nanolang_warms_up_on(
    tiny_llama: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_vllm_log(tmp_path, monkeypatch)
    names = ("1024/512", "lmsys")
    jobs = [{"workload": w, "num_requests": 2, "seed": workload_seed(w), "scale": 0.02}
            for w in names]  # fmt: skip
    run = PeerRun("vllm", "auto", str(_fake_site(tmp_path)), {}, 1)
    records = run_peer(run, Path(tiny_llama), jobs, 256, warmup_requests=3)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 4  # a warm-up per workload, then the two timed workloads
    vocab = json.loads((Path(tiny_llama) / "config.json").read_text())["vocab_size"]
    for call, name in zip(calls[:2], names, strict=True):
        want = warmup_requests(name, 3, vocab, 0.02)  # what nanolang's warm_up serves
        assert call["prompts"] == [r.prompt_token_ids for r in want]
        assert call["max_tokens"] == [min(r.output_len, WARMUP_OUTPUT_TOKENS) for r in want]
    assert max(calls[0]["max_tokens"]) == WARMUP_OUTPUT_TOKENS
    for call, name in zip(calls[2:], names, strict=True):
        timed = make_requests(WORKLOADS[name], 2, vocab, workload_seed(name), 0.02)
        assert call["prompts"] == [r.prompt_token_ids for r in timed]
    assert [r["warmup_requests"] for r in records] == [3, 3]
    assert all(r["warmup_seconds"] is not None for r in records)


def test_sglangs_largest_batch_comes_from_its_schedulers_log(
    tiny_llama: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    jobs = [{"workload": w, "num_requests": n, "seed": workload_seed(w), "scale": 0.02}
            for w, n in (("lmsys", 5), ("512/512", 3))]  # fmt: skip
    run = PeerRun("sglang", "fp8", str(_fake_site(tmp_path, "sglang")), {}, 1)
    records = run_peer(run, Path(tiny_llama), jobs, 256, warmup_requests=7, batch_stats=True)
    # per workload: the warm-up's batches of 7 are not counted
    assert [(r["max_batch_seqs"], r["preemptions"]) for r in records] == [(5, 2), (3, 2)]
    assert records[0]["max_num_seqs"] == 64 and records[0]["kv_cache_tokens"] == 4096
    assert records[0]["engine"] == "sglang 9.9.9" and records[0]["kv_cache_dtype"] == "fp8"
    err = capfd.readouterr().err
    assert "Decode batch, #running-req: 7" in err  # the peer's log still reaches the console
    assert err.count("Retract requests") == 4  # two warm-ups, two workloads
    # at a log level that leaves its batches out, the largest batch is unknown, not 0
    quiet = PeerRun("sglang", "auto", run.site, {"log_level": "error"}, 1)
    records = run_peer(quiet, Path(tiny_llama), jobs[:1], 256, batch_stats=True)
    assert "max_batch_seqs" not in records[0] and records[0]["max_num_seqs"] == 64
    assert "max_batch_seqs" not in run_peer(run, Path(tiny_llama), jobs[:1], 256)[0]


def test_warm_up_requests_share_no_prefix_with_other_requests() -> None:
    """Each workload's warm-up has a seed of its own: a 512-token warm-up prompt is no prefix of
    the 1024-token one (a peer's prefix cache would serve it), nor of any timed prompt."""
    vocab = 1000
    short, long = warmup_requests("512/1024", 4, vocab), warmup_requests("1024/512", 4, vocab)
    timed = [make_requests(WORKLOADS[w], 4, vocab, workload_seed(w))
             for w in ("512/1024", "1024/512")]  # fmt: skip
    heads = {tuple(r.prompt_token_ids[:16]) for r in [*long, *timed[0], *timed[1]]}
    assert not heads & {tuple(r.prompt_token_ids[:16]) for r in short}
    assert [len(r.prompt_token_ids) for r in short] == [512] * 4


def _inherit_sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_benchmark_keeps_the_running_peers_finished_workloads(
    tiny_llama: str, tmp_path: Path, sig: str
) -> None:
    """A time limit stops the benchmark while a peer runs, with SIGINT (the benchmark started
    with SIGINT ignored, as a non-interactive shell's background job is) or with SIGTERM
    (``timeout``'s default): the output file gets the peer's finished workloads with the run's
    context (flagged), and the peer's own worker dies."""
    out = tmp_path / "bench.json"
    log = tmp_path / "vllm.log"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "FAKE_VLLM_LOG": str(log), "FAKE_VLLM_HANG_AT_CALL": "2",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "runtime.bench", "--model", tiny_llama, "--load-format", "auto",
           "--device", "cpu", "--workloads", "lmsys:2,512/512:2", "--scale", "0.02", "--peer",
           "vllm", "--peer-site", f"vllm={_fake_site(tmp_path)}", "--out", str(out)]  # fmt: skip
    bench = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                             preexec_fn=_inherit_sigint_ignored)  # fmt: skip
    partial = out.with_name("bench.vllm-tp1-auto.partial.json")
    child = Path(str(log) + ".child")
    deadline = time.monotonic() + 120
    while not child.exists() and time.monotonic() < deadline:  # the peer hangs in workload 2
        time.sleep(0.2)
    assert child.exists() and partial.exists()
    bench.send_signal(signal.Signals[sig])
    assert bench.wait(timeout=60) != 0
    records = json.loads(out.read_text())
    assert [(r["engine"], r["workload"]) for r in records] == [
        ("nanolang", "lmsys"), ("nanolang", "512/512"), ("vllm 9.9.9", "lmsys"),
    ]  # fmt: skip
    peer = records[-1]
    assert peer["peer_run_interrupted"] is True and peer["command"].startswith("python -m")
    assert {"device", "date", "model"} <= set(peer) and not partial.exists()
    hung = int(child.read_text())
    deadline = time.monotonic() + 10
    while _alive(hung) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(hung)


def test_table_command_help_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.bench.table import main

    assert main(["--help"]) == 0
    assert "usage: python -m runtime.bench.table" in capsys.readouterr().out
    assert main([str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
