"""Several ``--shard I/N`` runs writing one results file, one after another (the lock keeps
them from running at once), then ``--retry-failed`` or ``--restart`` on one shard: it reruns
that shard's rows only, and every other shard's line, failed ones included, stays byte for byte
(``--retry-failed`` removed every failed line of the file, and ran only the shard's again: the
other shards' failures were gone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main

TO_INT = "program main(x) {\n    return int(x)\n}\n"
SHARDS = 3  # two rows each, in line order: shard k holds rows 2k and 2k + 1


def raw_lines(path: Path, key: str) -> dict[str, bytes]:
    """Each line of ``path`` as written, by its row's id (every id once)."""
    lines = [raw for raw in path.read_bytes().split(b"\n") if raw]
    by_id = {str(json.loads(raw)[key]): raw for raw in lines}
    assert len(by_id) == len(lines), lines
    return by_id


def eval_job(tmp_path: Path) -> list[str]:
    """Six rows, every odd one failing (``int('n1')``)."""
    program, data = tmp_path / "to_int.nano", tmp_path / "d.jsonl"
    program.write_text(TO_INT, encoding="utf-8")
    rows = [{"id": f"r{i}", "x": f"n{i}" if i % 2 else str(i)} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ["eval", str(program), "--data", str(data), "--quiet"]


def batch_job(tmp_path: Path) -> list[str]:
    """Six requests of one prefix group (so shards split them in line order), every odd one
    failing (``stream: true``, answered without the model)."""
    src = tmp_path / "in.jsonl"
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions",
         "body": {"model": "demo", "prompt": "Q:", "max_tokens": 2, "seed": i,
                  **({"stream": True} if i % 2 else {})}}
        for i in range(6)
    ]  # fmt: skip
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return ["batch", str(src), "--model-name", "demo", "--quiet"]


def run(base: list[str], out: Path, *extra: str) -> int:
    if base[0] == "eval":
        return cli_main([*base, "--out", str(out), *extra])
    return cli_main([*base[:2], str(out), *base[2:], *extra])


@pytest.mark.parametrize("kind", ["eval", "batch"])
@pytest.mark.parametrize("option", ["--retry-failed", "--restart"])
def test_one_shards_rerun_keeps_every_other_shards_lines_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, option: str
) -> None:
    base = eval_job(tmp_path) if kind == "eval" else batch_job(tmp_path)
    key = "id" if kind == "eval" else "custom_id"
    out = tmp_path / "shared.jsonl"
    for k in range(SHARDS):
        assert run(base, out, "--shard", f"{k}/{SHARDS}") == 0  # one of two rows fails
    before = raw_lines(out, key)
    assert sorted(before) == [f"r{i}" for i in range(6)]
    capsys.readouterr()
    status = run(base, out, "--shard", f"1/{SHARDS}", option)
    assert status == (1 if option == "--retry-failed" else 0)  # 1: every row of the run failed
    captured = capsys.readouterr()
    after = raw_lines(out, key)
    assert sorted(after) == sorted(before)  # each row exactly once
    for row_id in ("r0", "r1", "r4", "r5"):  # shards 0 and 2, their failed rows r1, r5 too
        assert after[row_id] == before[row_id], row_id
    if option == "--retry-failed":  # r3 ran again, r2 (finished) did not
        assert "--retry-failed: 1 failed rows of" in captured.err, captured.err
        assert after["r2"] == before["r2"]
        ran = "this run: rows / failed 1 / 1"
    else:  # r2 and r3 ran again
        assert "--restart: removed 2 earlier results" in captured.err, captured.err
        ran = "this run: rows / failed 2 / 1"
    shown = " ".join(captured.out.replace("│", " ").split())
    assert ran in shown, shown
    assert "rows (done / in dataset) 2 / 2" in shown, shown  # the shard's rows, all done
