"""Validity check: does every reference method beat every negative control? (``forcebench validate``)

    forcebench validate RUNS_DIR [--metric continuation_psnr] [--seconds 60] [--alpha 0.01]
        [--references sink sliding_window] [--out DIR] [--bootstrap 1000] [--seed 0]

A benchmark must tell a broken cache method from a sound one. The negative controls
(methods/controls/, method names ``control_*``) are broken on purpose; for each control and
each reference method, the videos of both at ``--seconds`` are paired on (prompt, seed) and
the difference reference - control is tested: PASS when the reference is better by the
metric's declared direction with a one-sided paired sign-flip permutation test p < alpha
(bench/report/stats.py), else FAIL. Exit status 0 when every pair passes, 1 when any fails, 2 on
bad input. The leaderboard runs the same ``check_controls`` and shows it at its top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.cli_args import Options, option, parse
from bench.report.runs import CONTROL_PREFIX, Runs, load, per_video
from bench.report.stats import PERMUTATIONS, Paired, paired_comparison, paired_differences
from core.errors import ConfigError, require
from core.files import atomic_write_text, write_json

# The primary score: against the ground truth on the toy world, else against the full-cache
# rollout inside the horizon (real backbones); the first of these the runs have.
PRIMARY_METRICS = ("continuation_psnr", "full_cache_psnr")
DEFAULT_METRIC = PRIMARY_METRICS[0]


def default_primary(present: set[str] | list[str]) -> str | None:
    """The first primary score the runs have, or None."""
    return next((k for k in PRIMARY_METRICS if k in present), None)
DEFAULT_REFERENCES = ("sink", "sliding_window")
POWER = 0.8


@dataclass(frozen=True)
class PairCheck:
    """One control against one reference: ``stats`` of the per-video differences oriented
    so that > 0 means the reference is better; ``diff_*`` the same as reference - control in
    the metric's units (for lower-is-better metrics the sign flips)."""

    control: str
    reference: str
    stats: Paired
    diff_mean: float
    diff_low: float
    diff_high: float
    passed: bool
    reason: str


@dataclass
class Validity:
    metric: str
    higher_is_better: bool
    seconds: float
    alpha: float
    resamples: int
    seed: int
    references: list[str]
    checks: list[PairCheck]
    missing_references: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def not_beaten(self) -> dict[str, list[str]]:
        """Control -> the references that do not beat it (controls that are beaten left out)."""
        out: dict[str, list[str]] = {}
        for c in self.checks:
            if not c.passed:
                out.setdefault(c.control, []).append(c.reference)
        return out

    def method_note(self) -> str:
        return (f"One-sided paired sign-flip permutation test of the mean of reference - control on videos "
                f"matched by (prompt, seed) at {self.seconds:g} s (exact over all 2^n sign patterns when "
                f"2^n <= {PERMUTATIONS}, else {PERMUTATIONS} random ones); PASS when the reference is better "
                f"({'higher' if self.higher_is_better else 'lower'} {self.metric}) with p < alpha = {self.alpha:g}. "
                f"Interval: 95 % percentile bootstrap over the pairs (B = {self.resamples}, seed {self.seed}). "
                f"MDD: the smallest mean difference this n detects at alpha with power {POWER:g} "
                f"(normal approximation).")


def resolve_references(runs: Runs, requested: list[str], strict: bool) -> tuple[list[str], list[str]]:
    """(present, missing) reference labels. Strict: every requested one must be a non-control
    method of the runs (else a ConfigError naming it)."""
    controls = set(runs.controls())
    methods = sorted(m for m in runs.videos["method"].unique() if m not in controls)
    present = [r for r in dict.fromkeys(requested) if r in methods]
    missing = [r for r in dict.fromkeys(requested) if r not in methods]
    if strict:
        for ref in missing:
            require(False, "--references", ref, f"no such (non-control) method in the runs; allowed: "
                    f"{', '.join(methods) or 'none: the runs hold only controls'}")
    return present, missing


def check_inputs(runs: Runs, metric: str, seconds: float, alpha: float) -> bool:
    """Raise a ConfigError on a metric, duration or alpha the check cannot use; returns
    the metric's direction (higher is better)."""
    require(0 < alpha < 1, "--alpha", alpha, "allowed: 0 < alpha < 1")
    present = sorted(runs.metric_keys())
    require(metric in present, "--metric", metric, f"not in the runs; allowed: {', '.join(present)}")
    direction = runs.directions.get(metric)
    if direction not in (True, False):
        ranked = ", ".join(k for k in present if runs.directions.get(k) in (True, False))
        raise ConfigError(f"--metric={metric!r}: has no direction (higher_is_better) in the runs; "
                          f"allowed: a metric with one: {ranked}")
    durations = sorted(float(s) for s in runs.videos["seconds"].unique())
    require(any(np.isclose(seconds, d) for d in durations), "--seconds", seconds,
            f"no runs at that duration; allowed: {', '.join(f'{d:g}' for d in durations)}")
    if not runs.controls():
        raise ConfigError(f"runs={str(runs.root)!r}: no control runs found (method names starting with "
                          f"{CONTROL_PREFIX!r}); allowed: runs that include methods/controls/ (e.g. sweep=default)")
    return bool(direction)


def judge(stats: Paired, alpha: float, metric: str) -> tuple[bool, str]:
    """PASS / FAIL and why, from the oriented statistics (> 0: the reference is better)."""
    if stats.n == 0:
        return False, "no (prompt, seed) pairs with a value for both"
    if not stats.mean > 0:
        return False, f"the control ties or wins on {metric}"
    if stats.p < alpha:
        return True, "beaten"
    if stats.smallest_p >= alpha:
        return False, (f"p >= alpha, and n = {stats.n} pairs cannot reach p < {alpha:g} (smallest p "
                       f"{stats.smallest_p:.3g}): add prompts or seeds")
    return False, f"p >= alpha (this n detects a mean difference of about {stats.mdd:.3g})"


def check_controls(runs: Runs, metric: str, seconds: float, references: list[str], alpha: float,
                   resamples: int = 1000, seed: int = 0) -> Validity:
    """Pair every control with every reference on (prompt, seed) at ``seconds`` and test
    whether the reference is better on ``metric`` (ConfigError on unusable input)."""
    higher = check_inputs(runs, metric, seconds, alpha)
    sign = 1.0 if higher else -1.0
    vids = per_video(runs, metric)
    vids = vids[np.isclose(vids.seconds, seconds)].set_index(["prompt", "seed"])
    checks = []
    for control in runs.controls():
        ctrl = vids.loc[vids.method == control, "value"]
        for ref in references:
            base = vids.loc[vids.method == ref, "value"]
            diff = paired_differences(base, ctrl)  # reference - control
            stats = paired_comparison(sign * diff, resamples, [seed, len(checks)], alpha)
            lo, hi = sorted((sign * stats.lo, sign * stats.hi))
            passed, reason = judge(stats, alpha, metric)
            checks.append(PairCheck(control, ref, stats, sign * stats.mean, lo, hi, passed, reason))
    return Validity(metric, higher, float(seconds), alpha, resamples, seed, list(references), checks)


def fmt(x: float, signed: bool = False, digits: int = 4) -> str:
    """``digits`` significant digits; "-" when undefined; no "-0"."""
    if not np.isfinite(x):
        return "-"
    return f"{0.0 if x == 0 else x:{'+' if signed else ''}.{digits}g}"


def rows(validity: Validity) -> list[dict[str, str]]:
    """The report's table rows as display strings (Markdown and HTML share them)."""
    out = []
    for c in validity.checks:
        out.append({"control": c.control, "reference": c.reference, "n": str(c.stats.n),
                    "reference - control [95 % CI]": f"{fmt(c.diff_mean, True)} [{fmt(c.diff_low, True)}, "
                                                     f"{fmt(c.diff_high, True)}]",
                    "p": fmt(c.stats.p, digits=3), "smallest p": fmt(c.stats.smallest_p, digits=3),
                    "MDD": fmt(c.stats.mdd, digits=3),
                    "result": "PASS" if c.passed else f"FAIL: {c.reason}"})
    return out


def verdict(validity: Validity) -> str:
    """One sentence: PASS, or which controls are not beaten and by which references."""
    where = f"{validity.metric} at {validity.seconds:g} s"
    if validity.passed:
        return f"PASS: every negative control is beaten by {', '.join(validity.references)} on {where}."
    lost = "; ".join(f"{c} by {', '.join(refs)}" for c, refs in validity.not_beaten().items())
    return f"FAIL: NOT BEATEN on {where}: {lost}."


def validity_markdown(validity: Validity, level: int = 2) -> str:
    """The check as Markdown: a heading, the verdict, the table (FAIL rows in bold), the test."""
    table = rows(validity)
    head = list(table[0]) if table else []
    lines = [f"{'#' * level} Validity check: negative controls", "", f"**{verdict(validity)}**", ""]
    if validity.missing_references:
        lines += [f"References not in these runs (left out): {', '.join(validity.missing_references)}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = list(row.values())
        if row["result"] != "PASS":
            cells = [f"**{v}**" for v in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", validity.method_note(), ""])


def _plain(value: object) -> object:
    """NaN and inf as null, so that validity.json is strict JSON."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def validity_json(validity: Validity) -> dict:
    return {"passed": validity.passed, "metric": validity.metric, "higher_is_better": validity.higher_is_better,
            "seconds": validity.seconds, "alpha": validity.alpha, "bootstrap": validity.resamples,
            "seed": validity.seed, "references": validity.references, "not_beaten": validity.not_beaten(),
            "test": validity.method_note(),
            "pairs": [{k: _plain(v) for k, v in pair_record(c).items()} for c in validity.checks]}


def pair_record(c: PairCheck) -> dict:
    """One pair for validity.json: the difference reference - control in the metric's units."""
    return {"control": c.control, "reference": c.reference, "n": c.stats.n, "diff_mean": c.diff_mean,
            "diff_low": c.diff_low, "diff_high": c.diff_high, "diff_sd": c.stats.sd, "p": c.stats.p,
            "smallest_p": c.stats.smallest_p, "mdd": c.stats.mdd, "passed": c.passed, "reason": c.reason}


@dataclass
class ControlCheckOptions(Options):
    """What the check of the negative controls reads and how it tests (validate and leaderboard)."""

    runs: str = option(help="directory holding run directories (out_dir of forcebench run)", positional=True)
    references: tuple[str, ...] = option(DEFAULT_REFERENCES, "methods that must beat every negative control",
                                         metavar="METHOD")
    alpha: float = option(0.01, "significance level of the check")
    bootstrap: int = option(1000, "bootstrap resamples B", minimum=1)
    seed: int = option(0, "bootstrap and permutation seed")

    def validate(self) -> None:
        require(0 < self.alpha < 1, "--alpha", self.alpha, "allowed: 0 < alpha < 1")


@dataclass
class ValidateOptions(ControlCheckOptions):
    """``forcebench validate``'s options."""

    metric: str | None = option(None, f"metric key to test on (default: the first of {', '.join(PRIMARY_METRICS)} "
                                      "the runs have)", metavar="KEY")
    seconds: float = option(60.0, "duration the videos are paired at")
    out: str | None = option(None, "also write validity.md and validity.json here", output="dir")


def main(argv: list[str]) -> int:
    """``forcebench validate``: 0 when every control is beaten, 1 when one is not, 2 on bad input."""
    args = parse("forcebench validate", argv, ValidateOptions, description=__doc__.split("\n\n")[0])
    runs = load(Path(args.runs))
    metric = args.metric or default_primary(runs.metric_keys()) or DEFAULT_METRIC
    check_inputs(runs, metric, args.seconds, args.alpha)  # before the references: the more basic errors first
    references, _ = resolve_references(runs, args.references, strict=True)
    validity = check_controls(runs, metric, args.seconds, references, args.alpha, args.bootstrap, args.seed)
    markdown = validity_markdown(validity, level=1)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "validity.md", markdown)
        write_json(out / "validity.json", validity_json(validity))
    print(markdown)
    return 0 if validity.passed else 1
