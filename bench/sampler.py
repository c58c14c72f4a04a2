"""Few-step flow-matching samplers for one chunk.

Convention: x_t = (1 - t) * x0 + t * noise; the model predicts v = noise - x0.
Timesteps go from 1 to 0 in ``steps`` equal steps, warped by ``shift`` as in Wan / Self
Forcing: t' = shift * t / (1 + (shift - 1) * t) (shift 5.0 for Wan, 1.0 = no warp).

- ``euler``: x_{t'} = x_t + (t' - t) * v (deterministic ODE step).
- ``renoise``: predict x0 = x_t - t * v, then draw x_{t'} = (1 - t') * x0 + t' * noise
  with fresh noise (the Self Forcing / CausVid few-step sampler).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlowSampler:
    steps: int = 4
    shift: float = 1.0
    kind: str = "euler"

    def timesteps(self) -> list[float]:
        """steps + 1 values from 1.0 down to 0.0 (the last is the clean point)."""
        base = [1.0 - i / self.steps for i in range(self.steps + 1)]
        return [self.shift * t / (1.0 + (self.shift - 1.0) * t) for t in base]

    def step(self, x: torch.Tensor, v: torch.Tensor, t: float, t_next: float,
             generator: torch.Generator) -> torch.Tensor:
        if self.kind == "euler":
            return x + (t_next - t) * v
        x0 = x - t * v
        if t_next == 0.0:
            return x0
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        return (1.0 - t_next) * x0 + t_next * noise
