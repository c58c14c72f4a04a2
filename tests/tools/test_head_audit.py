"""The head-classifier audit (``forcebench audit-heads``) and ``forcebench profile --classifier``:
agreement statistics against hand-computed values, the binary mappings, every classifier on the
tiny backbone, the head-masked cache, and the command's files and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY

import bench.tools.head_audit as head_audit
from bench.cli import main as cli_main
from bench.models.toy import ToyConfig, ToyDiT
from bench.rollout import generate
from bench.sampler import FlowSampler
from bench.tools.head_audit_stats import (
    ALTERNATIVE,
    BINARY,
    adjusted_rand_index,
    cohen_kappa,
    compare,
    to_binary,
)
from bench.tools.profile import (
    CLASSIFIERS,
    LABELS,
    CalibrationRecorder,
    ClassifierOptions,
    ProfileConfig,
    draw_calibration,
    labels_file,
    profile_classifier,
    role_names,
    write_labels,
)
from methods.base import METHODS
from methods.dummy_forcing import DummyForcing, DummyForcingConfig
from methods.forcing_kv import ForcingKVConfig
from methods.pyramid_profile import PyramidThresholds, read_pyramid_labels
from methods.roles import RoleThresholds

ONE = ProfileConfig(prompts=1, seeds=1, steps=1)


# -- agreement statistics --------------------------------------------------------------------------

def test_cohen_kappa_against_hand_computed_values():
    # confusion [[2, 1], [0, 3]]: p_o = 5/6, p_e = (3 x 2 + 3 x 4) / 36 = 1/2 -> (5/6 - 1/2) / (1/2) = 2/3
    assert cohen_kappa([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(2 / 3)
    # three classes: p_o = 4/6, marginals (2, 2, 2) x (2, 3, 1): p_e = 12/36 -> (2/3 - 1/3) / (2/3) = 1/2
    assert cohen_kappa(list("aabbcc"), list("abbbca")) == pytest.approx(0.5)
    assert cohen_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)  # p_o = 0, p_e = 1/2
    assert cohen_kappa(["x", "y", "x"], ["x", "y", "x"]) == pytest.approx(1.0)
    assert np.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))  # p_e = 1: undefined


def test_adjusted_rand_index_against_hand_computed_values():
    # contingency [[2, 0, 0], [0, 1, 1]]: index 1, rows 2, cols 1, pairs 6 -> expected 1/3, max 3/2 -> 4/7
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    assert adjusted_rand_index(["x", "x", "y", "y"], [5, 5, 6, 7]) == pytest.approx(4 / 7)  # names need not match
    # contingency [[2, 1], [0, 3]]: index 4, rows 6, cols 7, pairs 15 -> (4 - 2.8) / (6.5 - 2.8) = 12/37
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(12 / 37)
    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)  # a relabelling
    assert adjusted_rand_index([0, 0, 0], [1, 1, 1]) == pytest.approx(1.0)  # one cluster each


def test_binary_mappings():
    assert to_binary(np.array([["local", "anchor", "memory"]]), "head_forcing").tolist() == [[False, True, True]]
    assert to_binary(np.array([["static", "dynamic"]]), "forcing_kv").tolist() == [[False, True]]
    assert to_binary(np.array([["anchor", "wave", "veil"]]), "pyramid_forcing").tolist() == [[True, True, False]]
    assert to_binary(np.array([["sink", "local", "dummy"]]), "dummy_forcing").tolist() == [[True, True, False]]
    assert to_binary(np.array([["anchor", "wave", "veil"]]), "pyramid_forcing", ALTERNATIVE).tolist() == [[False, True, False]]
    assert to_binary(np.array([["sink", "local", "dummy"]]), "dummy_forcing", ALTERNATIVE).tolist() == [[True, False, False]]
    for classifier in CLASSIFIERS:  # every label of every classifier is mapped, both ways
        assert set(BINARY[classifier]) == set(LABELS[classifier]) == set(ALTERNATIVE[classifier])
    with pytest.raises(ValueError, match="no binary mapping"):
        to_binary(np.array([["veil"]]), "head_forcing")
    out = compare(np.array([["local", "memory"]]), np.array([["static", "dynamic"]]), "head_forcing", "forcing_kv")
    assert out["binary"]["confusion"] == [[1, 0], [0, 1]] and out["binary"]["kappa"] == pytest.approx(1.0)
    assert out["contingency"] == {"rows": ["local", "memory"], "cols": ["dynamic", "static"], "counts": [[0, 1], [1, 0]]}


# -- every classifier on the tiny backbone ---------------------------------------------------------

@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_each_classifier_labels_every_head_on_the_tiny_backbone(tiny_model, tmp_path, classifier):
    g = tiny_model.geometry
    result = profile_classifier(tiny_model, ONE, classifier, RoleThresholds(), PyramidThresholds(), ClassifierOptions())
    labels = np.asarray(result["labels"])
    assert labels.shape == (g.layers, g.heads) and set(labels.ravel()) <= set(LABELS[classifier])
    assert result["calibration"] == draw_calibration(ONE)  # Head Forcing's prompts and seeds
    data = labels_file("tiny", classifier, result, ONE, g, RoleThresholds(), ClassifierOptions(), None, "profile")
    path = tmp_path / f"{classifier}.json"
    write_labels(path, classifier, data)
    saved = json.loads(path.read_text())
    assert saved["roles"] == labels.tolist() and path.with_suffix(".png").stat().st_size > 1000
    if classifier == "pyramid_forcing":
        assert read_pyramid_labels(path)["roles"] == labels.tolist()
        assert saved["profile"]["steps"] == 1 and saved["profile"]["prompts"] == 1
    if classifier == "dummy_forcing":
        assert len(saved["per_rollout"]) == 1 and saved["stats"]["agreement"] == [[1.0] * g.heads] * g.layers


def test_forcing_kv_labels_are_the_methods_own_on_the_same_profile(tiny_model, tmp_path):
    """The forcing_kv labels equal what ForcingKVConfig computes from the head_forcing role map of
    the same calibration (the role map the method reads)."""
    g = tiny_model.geometry
    hf = profile_classifier(tiny_model, ONE, "head_forcing", RoleThresholds(), PyramidThresholds(), ClassifierOptions())
    write_labels(tmp_path / "toy.json", "head_forcing",
                 labels_file("tiny", "head_forcing", hf, ONE, g, RoleThresholds(), ClassifierOptions(), None, "profile"))
    fkv = profile_classifier(tiny_model, ONE, "forcing_kv", RoleThresholds(), PyramidThresholds(), ClassifierOptions())
    static, _ = ForcingKVConfig(role_map=str(tmp_path / "toy.json")).heads(g)
    assert (np.asarray(fkv["labels"]) == "static").tolist() == static.tolist()


def test_dummy_recorder_matches_dummy_forcing_in_its_own_rollout(tiny_model):
    g = tiny_model.geometry
    recorder = CalibrationRecorder(g, CLASSIFIERS)  # every recorder at once, one rollout
    generate(tiny_model, recorder, [(0.0, "red circle, static camera")], g.horizon_frames, 3, FlowSampler(2))
    method = DummyForcing(DummyForcingConfig(), g)
    generate(tiny_model, method, [(0.0, "red circle, static camera")], g.horizon_frames, 3, FlowSampler(2))
    record = recorder.dummy_records[0]
    np.testing.assert_array_equal(record["p0"], method.head_mass[0].double().numpy())
    np.testing.assert_array_equal(record["p1"], method.head_mass[1].double().numpy())
    assert record["roles"].tolist() == role_names(method.roles.numpy()).tolist()


def test_pooled_rollouts_give_the_single_recorders_labels(tiny_model):
    cfg = ProfileConfig(prompts=2, seeds=1, steps=1)
    g, args = tiny_model.geometry, (RoleThresholds(), PyramidThresholds(), ClassifierOptions())
    records = head_audit.record_rollouts(tiny_model, draw_calibration(cfg), 1, args[0], args[2])
    pooled = head_audit.pooled_labels(records, g, *args)
    for classifier in CLASSIFIERS:
        alone = profile_classifier(tiny_model, cfg, classifier, *args)
        assert np.asarray(pooled[classifier]["labels"]).tolist() == np.asarray(alone["labels"]).tolist()


# -- the head-masked cache ---------------------------------------------------------------------------

def test_masked_heads_keep_only_the_current_chunk(tiny_model):
    g = tiny_model.geometry
    mask = np.array([[True, False], [False, True]])
    method = head_audit.HeadMaskedWindow(g, mask, window=4)
    seen = []
    original = method.views

    def views(chunk_start):
        out = original(chunk_start)
        seen.append((chunk_start, [v.q_pos.clone() for v in out], [s.lengths().clone() for s in method.layers]))
        return out

    method.views = views
    generate(tiny_model, method, [(0.0, "red circle, static camera")], 12, 0, FlowSampler(1))
    for chunk_start, q_pos, lengths in seen:
        for layer in range(g.layers):
            for head in range(g.heads):
                n = int(lengths[layer][head])
                if mask[layer, head]:  # nothing cached: the chunk alone, at positions 0..F-1
                    assert n == 0 and q_pos[layer][head].tolist() == list(range(g.frames_per_chunk))
                else:  # the last 4 frames (fewer at the start), repacked
                    frames = min(4, chunk_start)
                    assert n == frames * g.tokens_per_frame
                    assert q_pos[layer][head].tolist() == list(range(frames, frames + g.frames_per_chunk))
    assert all(entry.cls is not head_audit.HeadMaskedWindow for entry in (METHODS.get(n) for n in METHODS.names()))


# -- the command -------------------------------------------------------------------------------------

TINY_ARGS = ["--prompts", "2", "--seeds", "2", "--steps", "1", "--stability-steps", "2", "--cost-rollouts", "1",
             "--ablation-prompts", "1", "--ablation-seeds", "2", "--ablation-seconds", "3", "--prefix-frames", "3",
             "--ablation-window", "6", "--ablation-draws", "2", "--ablation-steps", "1", "--resamples", "100"]


def test_audit_command_writes_its_files(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)  # a tiny backbone that draws toy-world (32 x 32) frames
    model = ToyDiT(ToyConfig(**{**TINY, "frame_size": 32, "patch": 8})).eval()
    monkeypatch.setattr(head_audit, "load_toy", lambda weights: model)
    out = tmp_path / "audit"
    assert cli_main(["audit-heads", "--out", str(out), *TINY_ARGS]) == 0
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "labels.png", "ablation.png"}
    report = json.loads((out / "report.json").read_text())
    assert set(report["labels"]) == set(CLASSIFIERS)
    assert set(report["stability"]) == {"prompts", "seeds", "steps"}
    assert len(report["pairwise"]) == 6 and report["ablation"]["videos"][1]["seed"] == 1
    assert len(report["ablation"]["comparisons"]) == 3 * len(CLASSIFIERS)
    assert report["cost"]["calibration_rollouts"] == 4
    text = (out / "report.md").read_text()
    assert "Cohen's kappa" in text and "MDD" in text and "forcebench audit-heads --out" in text


@pytest.mark.parametrize("args, named", [
    (["--prompts", "0"], "--prompts=0"),
    (["--alpha", "2"], "--alpha=2.0"),
    (["--ablation-window", "99"], "--ablation-window=99"),
    (["--prefix-frames", "4"], "--prefix-frames=4"),
    (["--ablation-prompts", "99"], "--ablation-prompts=99"),
    (["--bogus"], "--bogus"),
])
def test_audit_command_refuses_bad_input_with_one_line(tmp_path, monkeypatch, capsys, args, named):
    monkeypatch.setattr(head_audit, "audit_heads", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "audit"
    assert cli_main(["audit-heads", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err
    assert not out.exists()


def test_audit_command_refuses_a_file_as_out(tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("x")
    assert cli_main(["audit-heads", "--out", str(out)]) == 2
    assert "--out=" in capsys.readouterr().err and out.read_text() == "x"


def test_profile_classifier_option_is_checked(tmp_path, capsys):
    assert cli_main(["profile", "--classifier", "bogus", "--out", str(tmp_path / "x.json")]) == 2
    assert "--classifier" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
