"""The kernel benchmark: its shapes, its comparators (all equal to the reference) and its files."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main as cli_main
from bench.preflight import compose_run_config, model_geometry
from bench.tools.kernel_bench import (
    attention_flops,
    backbone_config,
    default_method,
    distributions,
    make_case,
)
from kernels.bench_impls import IMPLEMENTATIONS, Case
from kernels.reference import ragged_attention_reference
from methods import METHODS


def test_wan_shapes_and_length_distributions():
    g = model_geometry("wan_1_3b")
    assert (g.heads, g.head_dim, g.frames_per_chunk * g.tokens_per_frame) == (12, 128, 4680)
    d = distributions("wan", g)
    assert d["full (trained horizon)"] == [32760] * 12
    assert d["sink / uniform (12 frames)"] == [12 * 1560] * 12
    # the toy profile's shares (9 local, 3 anchor, 4 memory of 16) on 12 heads: 7 local heads widened to
    # 9 frames, 2 anchors of 3 + 9, 3 memory heads capped at the 18-frame horizon
    assert d["head_forcing"] == [9 * 1560] * 7 + [12 * 1560] * 2 + [18 * 1560] * 3
    assert sum(d["head_forcing"]) <= sum(d["sink / uniform (12 frames)"])  # never more KV bytes than the baselines
    stress = d["ragged stress (1 .. 32760)"]
    assert min(stress) == 1 and max(stress) == 32760 and len(set(stress)) == 12


def test_configs_without_hydra_are_what_hydra_composes():
    """The benchmark (and the GPU check through it) builds configs from the dataclasses alone."""
    for name in METHODS.names():
        assert default_method(name) == compose_run_config([f"method={name}", "metrics=none"]).method, name
    assert backbone_config("toy").geometry() == model_geometry("toy")
    assert backbone_config("wan").geometry() == model_geometry("wan_1_3b")


def test_stress_distribution_is_optional():
    g = model_geometry("wan_1_3b")
    assert list(distributions("wan", g, stress=False)) == ["full (trained horizon)", "sink / uniform (12 frames)",
                                                           "head_forcing"]
    assert len(distributions("toy", model_geometry("toy"), stress=True)) == 4


def test_attention_flops_count_every_query_key_pair_twice():
    case = make_case(model_geometry("toy"), [40, 0, 7, 100], batch=2, dtype=torch.float32, device=torch.device("cpu"))
    # 2 batch x 48 queries x 24 dims x (147 cached + 4 heads x 48 own keys) x (q.k + p.v) x 2 flops
    assert attention_flops(case) == 2 * 48 * 24 * (147 + 4 * 48) * 2 * 2


def small_case(bias: bool) -> Case:
    g = model_geometry("toy")
    case = make_case(g, [40, 0, 7, 100], batch=2, dtype=torch.float32, device=torch.device("cpu"), seed=1)
    if bias:
        case.cache.bias = torch.log(torch.arange(1, 148).float() % 3 + 1)
    return case


@pytest.mark.parametrize("bias", [False, True], ids=["plain", "merged-entries"])
def test_every_comparator_computes_the_reference(bias):
    case = small_case(bias)
    expected, _ = ragged_attention_reference(case.q, case.k_self, case.v_self, case.q_pos, case.cache, case.rope)
    for name, build in IMPLEMENTATIONS.items():
        out = build(case)()
        assert out.shape == expected.shape, name
        torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5, msg=name)


def test_cpu_run_writes_json_and_markdown(tmp_path, capsys):
    assert cli_main(["bench-kernels", "--repeats", "2", "--warmup", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "kernels_cpu.json").read_text())
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert "GPU numbers need a GPU" in result["note"] and result["copy_bandwidth_gbs"] > 0
    assert [s["distribution"] for s in result["shapes"]] == ["full (trained horizon)", "sink / uniform (12 frames)",
                                                              "head_forcing"]
    for shape in result["shapes"]:
        assert [r["implementation"] for r in shape["rows"]] == ["reference", "sdpa_padded", "sdpa_per_head", "flex"]
        for row in shape["rows"]:
            assert row["median_ms"] > 0 and row["max_rel_err"] <= 1e-5 and row["peak_extra_mib"] is None
            expected_bw = shape["bytes"] / (row["median_ms"] / 1e3) / 1e9
            assert row["bandwidth_gbs"] == pytest.approx(expected_bw)
    md = (tmp_path / "kernels_cpu.md").read_text()
    assert "## toy: head_forcing" in md and "| flex |" in md and "GPU numbers need a GPU" in md
    assert "wrote" in capsys.readouterr().out


def test_wan_shapes_on_a_cpu_are_a_one_line_error(capsys):
    assert cli_main(["bench-kernels", "--backbone", "wan", "--device", "cpu"]) == 2
    assert "--backbone='wan' on a CPU: Wan shapes need a GPU; allowed: toy" in capsys.readouterr().err
