"""``lpips-alex`` and ``lpips-vgg``: the lpips package's LPIPS (v0.1) distance.

The network is ``lpips.LPIPS(net=..., pnet_rand=True)``, so its trunk is built without
weights and nothing is downloaded. The linear heads are the ones the lpips package ships
(lpips/weights/v0.1/<alex|vgg>.pth, read from the installed package). The trunk comes
from the local file: torchvision's AlexNet or VGG-16 state dict (``features.<i>.*``; the
``classifier.*`` entries of a full torchvision file are ignored), e.g. torchvision's
alexnet-owt-7be5be79.pth or vgg16-397923af.pth, accepted under their own names.

Inputs in [0, 1] are scaled to [-1, 1] inside. AlexNet needs frames of at least about
32 pixels a side, VGG-16 at least 16.

Not torchmetrics' LPIPS: ``LearnedPerceptualImagePatchSimilarity`` and its functional form
build their trunk with torchvision's pretrained weights, fetched from the network when they
are not cached, and take no local file (the functional form also rebuilds the network on
every call); the lpips package takes the trunk from ours. The heads and the forward are
the same code (torchmetrics vendors the lpips package).

``LpipsNetConfig`` configures the network (``tiny``); the ``lpips`` metric's own config
(which network, batch size) is ``metrics.lpips.LpipsConfig``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from metrics.encoders.base import ENCODERS, PerceptualDistance, model_device, unit_pair

SLICE = re.compile(r"^slice\d+\.")


@dataclass
class LpipsNetConfig:
    """tiny: lpips' forward over a small random trunk and fixed non-negative heads, for tests."""

    tiny: bool = False


class _Slices(nn.Module):
    """A conv stack cut into slice1..sliceK, each layer named by its index in the stack
    (the way lpips names torchvision's ``features``); returns every slice's output."""

    def __init__(self, features: nn.Sequential, bounds: list[tuple[int, int]]) -> None:
        super().__init__()
        self.count = len(bounds)
        for k, (lo, hi) in enumerate(bounds, 1):
            part = nn.Sequential()
            for i in range(lo, hi):
                part.add_module(str(i), features[i])
            setattr(self, f"slice{k}", part)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k in range(1, self.count + 1):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


def _tiny_lpips() -> nn.Module:
    """An ``lpips.LPIPS`` (its own forward) whose trunk is 5 small conv + ReLU slices."""
    import lpips

    chns = [8, 16, 16, 16, 16]
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip([3] + chns[:-1], chns)):
        layers += [nn.Conv2d(cin, cout, 3, stride=2 if i < 2 else 1, padding=1), nn.ReLU()]
    # Bypass LPIPS.__init__, which would build a full torchvision trunk; set what forward reads.
    model = lpips.LPIPS.__new__(lpips.LPIPS)
    nn.Module.__init__(model)
    model.version, model.lpips, model.spatial, model.chns, model.L = "0.1", True, False, chns, len(chns)
    model.scaling_layer = lpips.ScalingLayer()
    model.net = _Slices(nn.Sequential(*layers), [(2 * i, 2 * i + 2) for i in range(len(chns))])
    model.lins = nn.ModuleList(lpips.NetLinLayer(c, use_dropout=False) for c in chns)
    # Fixed heads, as the package's are: the weights file holds the trunk only. Trained
    # heads are non-negative, so distances are.
    gen = torch.Generator().manual_seed(0)
    for lin in model.lins:
        weight = lin.model[-1].weight
        weight.data.copy_(torch.rand(weight.shape, generator=gen))
    return model.eval()


class LpipsNet(PerceptualDistance):
    trunk: str

    def __init__(self, cfg: LpipsNetConfig | None = None) -> None:
        import lpips

        super().__init__()
        self.cfg = cfg = cfg or LpipsNetConfig()
        if cfg.tiny:
            self.model, self.heads_file = _tiny_lpips(), None
            return
        self.heads_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{self.trunk}.pth"
        if not self.heads_file.is_file():
            raise FileNotFoundError(f"{self.name}: the lpips package lacks its heads file {self.heads_file}")
        with warnings.catch_warnings():  # torchvision's notice about the legacy pretrained= argument
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(net=self.trunk, version="0.1", pretrained=True, pnet_rand=True,
                                     verbose=False)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return {SLICE.sub("features.", k): v for k, v in self.model.net.state_dict().items()}

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state.items() if not k.startswith("classifier.")}

    def import_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        names = {SLICE.sub("features.", k): k for k in self.model.net.state_dict()}
        self.model.net.load_state_dict({names[k]: v for k, v in state.items()})

    def describe(self) -> dict[str, str | None]:
        return {**super().describe(), "heads_file": str(self.heads_file) if self.heads_file else None}

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b [N, 3, H, W] in [0, 1] -> [N] float32 LPIPS distances (spatial mean)."""
        a, b = unit_pair(a, b, model_device(self))
        return self.model(a * 2 - 1, b * 2 - 1).flatten().float()


@ENCODERS.register("lpips-alex", config=LpipsNetConfig)
class LpipsAlex(LpipsNet):
    name, trunk = "lpips-alex", "alex"
    aliases = ("alexnet-owt-7be5be79.pth",)


@ENCODERS.register("lpips-vgg", config=LpipsNetConfig)
class LpipsVgg(LpipsNet):
    name, trunk = "lpips-vgg", "vgg"
    aliases = ("vgg16-397923af.pth",)
