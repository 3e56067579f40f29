"""The tiled linear for decode row counts (kernels.triton.linear) against torch's linear, on fresh
random inputs; its table, its fallbacks and its opt-in registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
from triton_env import (
    DEVICE,
    INTERPRET,
    needs_triton_device,
    randn,
    skip_if_interpreted,
    ulp_tolerance,
)

from kernels.triton.linear import (
    TABLE,
    LinearConfig,
    _table,
    config_for,
    linear,
    linear_tiles,
    row_bucket,
)

# (rows, N, K): rows and columns that do not fill the last tile, and a K that is not a multiple
# of the block's; one row (a decode step's tail) over a K of several deep steps
SHAPES = [(5, 48, 64), (33, 80, 96), (64, 128, 128), (130, 256, 192), (1, 64, 640)]
CONFIGS = [LinearConfig(16, 32, 32, 2, 4), LinearConfig(64, 64, 64, 3, 4),
           LinearConfig(32, 128, 32, 4, 8), LinearConfig(16, 32, 256, 6, 4)]  # fmt: skip


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.block_m}x{c.block_n}x{c.block_k}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_tiles_match_torch(shape: tuple[int, int, int], config: LinearConfig,
                           dtype: torch.dtype) -> None:  # fmt: skip
    rows, n, k = shape
    skip_if_interpreted(rows * n * k > 4_000_000)
    if INTERPRET and dtype == torch.bfloat16:
        pytest.skip("the CPU interpreter's bfloat16 dots are wrong (float16 runs there)")
    x = randn(rows, k, dtype=dtype, seed=rows + k)
    w = randn(n, k, dtype=dtype, seed=n + 7, scale=k**-0.5)
    out = linear_tiles(x, w, config)
    expected = F.linear(x.float(), w.float())  # the exact product of the rounded inputs
    assert out.shape == (rows, n) and out.dtype == dtype
    # one rounding of the fp32 sum to the output dtype
    torch.testing.assert_close(out.float(), expected, **ulp_tolerance(dtype))
    given = torch.full((rows, n), float("nan"), dtype=dtype, device=DEVICE)
    assert linear_tiles(x, w, config, given) is given and torch.equal(given, out)


@pytest.mark.gpu
@needs_triton_device
def test_no_rows_gives_an_empty_output() -> None:
    x = torch.empty(0, 64, dtype=torch.bfloat16, device=DEVICE)
    w = randn(32, 64, dtype=torch.bfloat16, seed=1)
    assert linear_tiles(x, w, CONFIGS[0]).shape == (0, 32)


def test_without_a_measured_shape_the_call_is_torch_linear() -> None:
    """Off the GPU, with a bias, past MAX_ROWS or for a shape the table does not list, the
    result is torch's own (bit for bit)."""
    x = torch.randn(3, 4, 64)
    w = torch.randn(32, 64)
    b = torch.randn(32)
    assert config_for(x, w) is None
    assert torch.equal(linear(x, w), F.linear(x, w))
    assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    out = torch.full((3, 4, 32), float("nan"))
    assert linear(x, w, b, out=out) is out
    torch.testing.assert_close(out, F.linear(x, w, b))


def test_the_shipped_table_is_valid_and_every_entry_is_a_measured_win() -> None:
    data = json.loads(TABLE.read_text())
    assert data["schema"] == "nanolang.linear-configs"
    assert len(_table(TABLE)) == len(data["entries"])  # the kernel reads every entry, once
    for e in data["entries"]:
        LinearConfig(**e["config"])
        assert e["triton_us"] < e["torch_us"], e  # only shapes where the tiles won
        assert e["rows"] == row_bucket(e["rows"])


def test_the_table_is_read_by_gpu_rows_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    entry = {"device": "NVIDIA H200", "rows": 256, "n": 6144, "k": 4096, "dtype_bytes": 2,
             "config": {"block_m": 64, "block_n": 128, "block_k": 64, "num_stages": 4,
                        "num_warps": 4}, "torch_us": 24.0, "triton_us": 18.0}  # fmt: skip
    path.write_text(json.dumps({"schema": "nanolang.linear-configs", "entries": [entry]}))
    table = _table(path)
    assert table == {("NVIDIA H200", 256, 6144, 4096, 2): LinearConfig(64, 128, 64, 4, 4)}
    assert [row_bucket(r) for r in (1, 16, 17, 200, 256, 257)] == [16, 16, 32, 256, 256, 512]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="block_n must be a power of two"):
        LinearConfig(64, 96, 64, 3, 4)
    with pytest.raises(ValueError, match="num_warps"):
        LinearConfig(64, 64, 64, 3, 3)


def test_triton_linear_is_registered_below_torch() -> None:
    """Opt-in: the registry picks torch's linear unless NANOLANG_KERNELS names triton for it."""
    import kernels.triton_backend  # noqa: F401  (registers)
    from kernels.registry import _REGISTRY

    by_backend = {i.backend: i.priority for i in _REGISTRY["linear"]}
    assert by_backend["triton"] < by_backend["torch"]


def test_an_engine_takes_one_operator_from_a_named_backend() -> None:
    """``Ops.with_backend``: the operator swapped and recorded, the rest untouched; attention
    and unavailable backends refused by name."""
    from kernels import get_ops

    ops = get_ops("cpu")
    same = ops.with_backend("linear", "torch", "cpu")
    assert same.backends["linear"] == "torch" and same.rms_norm is ops.rms_norm
    with pytest.raises(ValueError, match=r"'triton' for linear is not available on cpu"):
        ops.with_backend("linear", "triton", "cpu")
    with pytest.raises(ValueError, match="pointwise operator"):
        ops.with_backend("paged_attention", "torch", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the table is keyed by a CUDA GPU's name")
def test_a_listed_shape_runs_the_tiles_and_others_run_cublas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a table entry for (this GPU, 256 rows, 384 x 512) the call runs the tiles (and
    matches torch's linear); 600 rows (another bucket) and another N run torch's."""
    import kernels.triton.linear as lin

    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs a Hopper GPU")
    name = torch.cuda.get_device_name(0)
    cfg = LinearConfig(64, 64, 64, 3, 4)
    monkeypatch.setattr(lin, "_table", lambda: {(name, 256, 384, 512, 2): cfg})
    ran: list[LinearConfig] = []
    real = lin.linear_tiles
    monkeypatch.setattr(lin, "linear_tiles", lambda x, w, c: ran.append(c) or real(x, w, c))
    w = randn(384, 512, dtype=torch.bfloat16, seed=3, scale=512**-0.5)
    x = randn(200, 512, dtype=torch.bfloat16, seed=4)
    torch.testing.assert_close(linear(x, w).float(), F.linear(x.float(), w.float()),
                               **ulp_tolerance(torch.bfloat16))  # fmt: skip
    assert ran == [cfg]
    linear(randn(600, 512, dtype=torch.bfloat16, seed=5), w)
    linear(x, randn(256, 512, dtype=torch.bfloat16, seed=6))
    assert ran == [cfg]


def test_a_malformed_table_is_an_error_naming_its_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"entries": [{"device": "X", "rows": 256}]}))
    with pytest.raises(ValueError, match=r"bad.json: not a linear-config table"):
        _table(path)
