"""The shipped toy weights load by default and reproduce recorded outputs.

Regenerate the record on purpose (after retraining) with
``python tests/models/test_shipped_weights.py``.
"""

from __future__ import annotations

import json
import sys

import torch

from core.paths import REPO_DIR

REFERENCE = REPO_DIR / "tests" / "data" / "shipped_weights_reference.json"
WEIGHTS = REPO_DIR / "bench" / "models" / "weights"


def reference_outputs() -> dict:
    from bench.models.toy import ToyConfig, ToyDiT
    from core.world import simulate
    from metrics.encoders import load_encoder

    model = ToyDiT(ToyConfig(checkpoint=str(WEIGHTS / "toy_dit.safetensors"))).eval()
    prompt = "forest blocks, red square bouncing, yellow cross sliding, camera pans right"
    video = torch.from_numpy(simulate([(0, prompt)], 6, seed=0).frames)
    x = video[None] * 2 - 1
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([[0.0] * 3 + [0.5] * 3])
    x = torch.cat((x[:, :3], 0.5 * x[:, 3:] + 0.5 * noise[:, 3:]), dim=1)
    with torch.no_grad():
        out = model.forward_sequence(x, t, model.encode_prompt(prompt), torch.arange(6),
                                     torch.ones(6, 6, dtype=torch.bool).tril())
        clip = load_encoder("toy-clip")
        image = clip.encode_image(video[:2])
        text = clip.encode_text([prompt])
    return {"dit_first": out.flatten()[:8].tolist(), "dit_abs_mean": float(out.abs().mean()),
            "clip_image_first": image.flatten()[:8].tolist(), "clip_text_first": text.flatten()[:8].tolist()}


def test_shipped_weights_reproduce_the_record():
    for name in ("toy_dit.safetensors", "toy_clip.safetensors"):
        assert (WEIGHTS / name).stat().st_size < 20 * 2**20
    expected = json.loads(REFERENCE.read_text())
    got = reference_outputs()
    for key, value in expected.items():
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(value), atol=1e-4, rtol=1e-4)


def test_default_config_uses_the_shipped_backbone():
    from bench.preflight import check_command_line

    (run,) = check_command_line([], multirun=False)
    assert run.model.checkpoint == "bench/models/weights/toy_dit.safetensors"
    assert run.prompts.name == "toy" and len(run.prompts.prompts) == 16


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(reference_outputs(), indent=2) + "\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)
