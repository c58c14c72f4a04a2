"""Pyramid Forcing's offline head classifier: Anchor / Wave / Veil from temporal QK logits.

What the authors do (github.com/IF-LAB-PKU/Pyramid-Forcing; README "Offline Tri-Pattern
Head Classification"): every head is labelled once per model from "sign-rate statistics on
pre-softmax logits plus frequency-domain periodicity (FFT), with a mean-score fallback for
any remaining heads", calibrated on 32 prompts x 15 s. What they capture is
``wan/modules/attention/capture.py``, ``FrameAttentionCapture.compute_frame_attention_chunked``
with ``capture_mode="logits_mean"``: per head and per (query frame, key frame) the mean of
the scaled, RoPE'd pre-softmax ``q . k`` over the batch, the query frame's tokens and the key
frame's tokens. The shipped labels (``configs/head_configs/best_labels.csv``, 30 x 12 heads
of Wan 1.3B) use the codes 1 = "stable (compact)" = Anchor (172 heads), -1 = "oscillating"
= Wave (156), 2 = "stable-sparse" = Veil (32): positive-dominant logits -> Anchor,
negative-dominant -> Veil, mixed with a stable period -> Wave. The script that turns the
captures into labels, and so its thresholds, is not in the public repository; the rule
below is forcebench's reading of that description, with every threshold a parameter.

The statistic (from the kernels, ``needs_attention_logits`` / ``observe_logits``): per cache
entry and query frame, the sum of its pre-softmax logits (temporally rotated at the assigned
positions, scaled, no merge bias) and the count of positive ones (``kernels.LogitStats``).
Summed over a key frame's entries and divided by the logits counted, that is exactly the
authors' frame-level mean logit. ``LogitProfiler`` (a full cache, like head_forcing's
``Profiler``) records one such *record* per (forward, query frame, key frame) of every
calibration rollout inside the trained horizon, by temporal distance d = query frame - key
frame (1 .. T-1), every denoising step and the clean pass alike (the authors record noisy and
clean passes).

The rule (``classify_pyramid``, thresholds ``PyramidThresholds``), per head:
  sign rate = share of records whose frame-level mean logit is > 0;
  Anchor  if sign rate >= ``anchor_sign_rate`` (positive-dominant);
  Veil    else if sign rate <= ``veil_sign_rate`` (negative-dominant);
  Wave    else if its mean logit by distance has a stable FFT period: after removing a linear
          trend, the dominant non-zero rFFT bin k of the pooled profile (d = 1 .. T-1) has
          at least ``min_cycles`` cycles in the profile (period (T-1)/k <= (T-1)/min_cycles,
          a rhythm, not a trend), and at least ``period_agreement`` of the calibration
          rollouts have the same dominant bin in their own profile;
  else    the mean-score fallback: Anchor if the head's mean record logit is > 0, else Veil.
The defaults (0.7, 0.3, 2 cycles, half the rollouts) are forcebench's, not published.

Calibration scaled to the toy: the authors' 32 prompts x 15 s (60 latent frames, past the
21-frame horizon, with their own cache policy running) become ``prompts`` x ``seeds`` full-
cache rollouts of exactly the trained horizon (21 frames on the toy), so every distance
1..20 is seen and no position leaves the trained range; 1 denoising step (its pass at t = 1
and the clean pass are both recorded) keeps the 16 rollouts near 2 minutes of CPU.
results/head_roles/toy_pyramid.json is (bench/tools/profile.py)::

    model = ToyDiT(ToyConfig(checkpoint="bench/models/weights/toy_dit.safetensors")).eval()
    prompts, seeds = toy_calibration(prompts=8, seeds=2, rng_seed=0)
    result = profile_pyramid(model, prompts, seeds, FlowSampler(1, model.default_shift))
    write_pyramid_labels(TOY_PYRAMID_LABELS, labels_json("toy", result, weights, profile={...}))

Shapes: the profiler's accumulators are [L, H, T] by distance (index 0 unused); labels are
[L, H] arrays of "anchor" / "wave" / "veil".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.errors import require
from core.files import write_json
from kernels import LogitStats
from methods.base import CacheMethod
from methods.full import FullConfig
from methods.roles import read_head_labels

LABELS = ("anchor", "wave", "veil")
AUTHORS_CODES = {"anchor": 1, "wave": -1, "veil": 2}  # configs/head_configs/best_labels.csv
TOY_PYRAMID_LABELS = "results/head_roles/toy_pyramid.json"  # `forcebench profile --classifier pyramid_forcing` of the shipped toy


@dataclass
class PyramidThresholds:
    """The classifier's thresholds (forcebench's choices; the authors' are not published)."""

    anchor_sign_rate: float = 0.7
    veil_sign_rate: float = 0.3
    min_cycles: int = 2
    period_agreement: float = 0.5

    def __post_init__(self) -> None:
        for key in ("anchor_sign_rate", "veil_sign_rate", "period_agreement"):
            require(0 <= getattr(self, key) <= 1, key, getattr(self, key), "allowed: 0 to 1")
        require(self.veil_sign_rate < self.anchor_sign_rate, "veil_sign_rate", self.veil_sign_rate,
                f"must be below anchor_sign_rate={self.anchor_sign_rate}")
        require(self.min_cycles >= 1, "min_cycles", self.min_cycles, "allowed: >= 1")


class LogitProfiler(CacheMethod):
    """The full cache, recording frame-level pre-softmax logits by temporal distance.

    Accumulators, [L, H, T] indexed by distance d (T = the trained horizon; d >= T is counted
    at T - 1): ``frame_sum`` (sum of frame-level mean logits), ``frame_positive`` (records
    with a positive mean), ``frame_count`` (records), ``token_positive`` / ``token_count``
    (positive logits among all logits). ``rollouts``: per finished rollout, [2, L, H, T]
    (sum of means, records), for the period's stability across rollouts.
    """

    needs_attention_logits = True

    def __init__(self, geometry, **kwargs) -> None:
        g = geometry
        shape = (g.layers, g.heads, g.horizon_frames)
        self.frame_sum, self.frame_positive, self.frame_count = (np.zeros(shape) for _ in range(3))
        self.token_positive, self.token_count = np.zeros(shape), np.zeros(shape)
        self.rollouts: list[np.ndarray] = []
        self._rollout: np.ndarray | None = None
        super().__init__(FullConfig(), geometry, **kwargs)

    def reset(self) -> None:
        """A new rollout (``generate`` resets the cache): close the previous one's profile."""
        self.finish()
        super().reset()
        g = self.geometry
        self._rollout = np.zeros((2, g.layers, g.heads, g.horizon_frames))

    def finish(self) -> None:
        """Close the current rollout's profile (if it recorded anything)."""
        current = getattr(self, "_rollout", None)
        if current is not None and current[1].sum() > 0:
            self.rollouts.append(current)
        self._rollout = None

    def observe_logits(self, layer: int, stats: LogitStats) -> None:
        store, g = self.layers[layer], self.geometry
        if len(store) == 0:
            return
        start = self.frames_written  # the querying chunk's first frame; every cached frame is before it
        sums = stats.logit_sum.double().cpu().numpy()  # [F, N]
        positive = stats.positive.double().cpu().numpy()
        queries = self.batch * g.frames_per_chunk * g.tokens_per_frame // sums.shape[0]  # logits per (entry, frame)
        key = store.head.cpu().numpy() * start + store.frame.cpu().numpy()
        groups, inverse = np.unique(key, return_inverse=True)  # one group per (head, key frame)
        entries = np.bincount(inverse)
        head, frame = groups // start, groups % start
        for q in range(sums.shape[0]):
            mean = np.bincount(inverse, weights=sums[q]) / (queries * entries)  # the authors' frame-level mean
            at = (head, np.minimum(start + q - frame, g.horizon_frames - 1))
            for target, value in ((self.frame_sum, mean), (self.frame_positive, mean > 0),
                                  (self.frame_count, 1.0), (self.token_count, queries * entries),
                                  (self.token_positive, np.bincount(inverse, weights=positive[q]))):
                np.add.at(target[layer], at, value)
            np.add.at(self._rollout[0, layer], at, mean)
            np.add.at(self._rollout[1, layer], at, 1.0)

    def summary(self) -> dict[str, np.ndarray]:
        """Statistics over distances 1 .. T-1: per head [L, H] ``sign_rate`` (share of positive
        frame-level means), ``mean_logit`` (mean record), ``token_positive_share``, ``records``;
        by distance [L, H, T-1] ``logit_by_distance`` and ``positive_share_by_distance``;
        per rollout [R, L, H, T-1] ``rollout_logit_by_distance``."""
        self.finish()
        if self.frame_count[..., 1:].sum() == 0:
            raise RuntimeError("the logit profiler recorded nothing; run it through bench.rollout.generate")
        count = self.frame_count[..., 1:]
        rollouts = np.stack(self.rollouts) if self.rollouts else np.zeros((0, 2, *count.shape[:2], count.shape[2] + 1))
        return {
            "sign_rate": self.frame_positive[..., 1:].sum(-1) / np.maximum(count.sum(-1), 1),
            "mean_logit": self.frame_sum[..., 1:].sum(-1) / np.maximum(count.sum(-1), 1),
            "token_positive_share": self.token_positive[..., 1:].sum(-1) / np.maximum(self.token_count[..., 1:].sum(-1), 1),
            "records": count.sum(-1),
            "logit_by_distance": self.frame_sum[..., 1:] / np.maximum(count, 1),
            "positive_share_by_distance": self.token_positive[..., 1:] / np.maximum(self.token_count[..., 1:], 1),
            "rollout_logit_by_distance": rollouts[:, 0, ..., 1:] / np.maximum(rollouts[:, 1, ..., 1:], 1),
        }


def dominant_bins(profiles: np.ndarray) -> np.ndarray:
    """[..., D] profiles -> [...] the rFFT bin k in 1 .. D//2 of largest power after a linear
    trend is removed (period D / k)."""
    D = profiles.shape[-1]
    x = np.arange(D, dtype=float) - (D - 1) / 2
    centred = profiles - profiles.mean(-1, keepdims=True)
    slope = (centred * x).sum(-1, keepdims=True) / max((x * x).sum(), 1e-12)
    power = np.abs(np.fft.rfft(centred - slope * x, axis=-1)) ** 2
    return power[..., 1:].argmax(-1) + 1


def periodicity(profile: np.ndarray, rollout_profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """profile [L, H, D] (pooled mean logit by distance), rollout_profiles [R, L, H, D] ->
    (dominant bin [L, H], agreement [L, H]: share of rollouts with the same dominant bin)."""
    bins = dominant_bins(profile)
    if len(rollout_profiles) == 0:
        return bins, np.zeros(bins.shape)
    return bins, (dominant_bins(rollout_profiles) == bins[None]).mean(0)


def classify_pyramid(sign_rate: np.ndarray, mean_logit: np.ndarray, profile: np.ndarray,
                     rollout_profiles: np.ndarray, t: PyramidThresholds | None = None) -> np.ndarray:
    """The tri-pattern rule (module docstring). sign_rate, mean_logit: [L, H]; profile:
    [L, H, D] mean logit by distance 1..D; rollout_profiles: [R, L, H, D]. Returns [L, H]
    labels ("anchor" / "wave" / "veil")."""
    t = t or PyramidThresholds()
    bins, agreement = periodicity(profile, rollout_profiles)
    periodic = (bins >= t.min_cycles) & (agreement >= t.period_agreement)
    labels = np.where(mean_logit > 0, "anchor", "veil").astype(object)  # the mean-score fallback
    labels[periodic] = "wave"
    labels[sign_rate <= t.veil_sign_rate] = "veil"
    labels[sign_rate >= t.anchor_sign_rate] = "anchor"
    return labels


def label_counts(labels: np.ndarray) -> dict[str, int]:
    return {name: int((np.asarray(labels) == name).sum()) for name in LABELS}


def labels_json(model_name: str, result: dict, weights: str | None = None, profile: dict | None = None) -> dict:
    """The labels file (the layout of results/head_roles/toy.json): "roles" [L][H] label names."""
    s = result["stats"]
    return {
        "model": model_name,
        "weights": weights,
        "method": "pyramid_forcing",
        "profile": profile or {},
        "thresholds": asdict(result["thresholds"]),
        "counts": label_counts(result["labels"]),
        "roles": np.asarray(result["labels"]).tolist(),
        "label_codes": AUTHORS_CODES,
        "stats": {
            "sign_rate": s["sign_rate"].tolist(), "mean_logit": s["mean_logit"].tolist(),
            "token_positive_share": s["token_positive_share"].tolist(), "records": s["records"].tolist(),
            "period": s["period"].tolist(), "period_agreement": s["period_agreement"].tolist(),
            "distances": list(range(1, s["logit_by_distance"].shape[-1] + 1)),
            "logit_by_distance": s["logit_by_distance"].tolist(),
            "positive_share_by_distance": s["positive_share_by_distance"].tolist(),
        },
        "calibration": result["calibration"],
    }


def write_pyramid_labels(path: str | Path, labels: dict) -> None:
    """Write a labels file (JSON; ``labels_json``'s layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, labels)


def read_pyramid_labels(path: str | Path, key: str = "method.role_map") -> dict:
    """A labels file as a dict with "roles": a [layers][heads] list of anchor / wave / veil;
    a missing, binary, malformed or label-less file is a one-line ConfigError naming ``key``."""
    return read_head_labels(path, key, LABELS, "a labels file written by `forcebench profile --classifier pyramid_forcing`")




def pyramid_labels_with_shares(labels: dict, layers: int, heads: int) -> dict:
    """Labels for a model without a profile (random weights): every layer gets the source
    ``labels``' class shares over its ``heads`` (anchor, then wave, then veil). Timing and memory
    only: which heads are which class is not measured on that model."""
    total = sum(label_counts(np.array(labels["roles"])).values())
    n = {c: round(heads * label_counts(np.array(labels["roles"]))[c] / total) for c in ("wave", "veil")}
    n["anchor"] = max(0, heads - n["wave"] - n["veil"])
    layer = [c for c in LABELS for _ in range(n[c])][:heads]
    roles = [layer] * layers
    return {"model": f"synthetic: class shares of {labels.get('model')}'s labels", "synthetic": True,
            "counts": label_counts(np.array(roles)), "roles": roles}
