"""bench/job_input_passes.py: one command measured in its child process, the child reaped and
its stderr pipe closed (it was left open: a ResourceWarning and a file descriptor per case)."""

from __future__ import annotations

import gc
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "job_input_passes", ROOT / "bench/job_input_passes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["job_input_passes"] = module
    spec.loader.exec_module(module)
    return module


def test_one_case_is_measured_in_a_child_whose_stderr_is_closed(tmp_path: Path) -> None:
    jip = bench()
    program, data = tmp_path / "to_int.nano", tmp_path / "d.jsonl"
    program.write_text(jip.PROGRAM, encoding="utf-8")
    data.write_text('{"x": "7", "pad": "p"}\n', encoding="utf-8")
    with jip.stub_server() as url:

        def evaluate(out: str) -> list[str]:
            return ["eval", str(program), "--data", str(data), "--out", str(tmp_path / out),
                    "--server", url, "--quiet"]  # fmt: skip

        case = ("one-row", evaluate("out.jsonl"), [*evaluate("warm.jsonl"), "--restart"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            measured = jip.run(ROOT, case, traced=False)
            gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
    assert set(measured) == {"job_cpu_s", "one_row_cpu_s", "process_cpu_s", "maxrss_mb"}
    assert all(value > 0 for value in measured.values()), measured
    assert '"output": 7' in (tmp_path / "out.jsonl").read_text(encoding="utf-8")
