"""Regression check: the results of finished runs against a committed reference table.

    forcebench regress RUNS_DIR [--reference CSV] [--tolerances YAML] [--sweep] [--update] [--fail-on-new]

The results table has one value per (method, prompt, seed, seconds, metric): every
whole-prefix metric of each finished run's ``summary.json`` plus the deterministic
system values (frames, chunks, KV bytes, tokens kept). The reference is the same table
as a CSV file (``results/reference/<name>.csv``). The tolerance file
(``conf/regress/<name>.yaml``) gives per-metric tolerances, the metrics to skip
(machine-dependent timings and memory) and the ``forcebench run -m`` overrides of the
sweep that the reference covers (``--sweep`` runs it into RUNS_DIR first).

A value passes when ``|current - reference| <= max(abs, rel * |reference|)``; NaN equals
NaN. The check fails (exit 1) on a value outside its tolerance, a reference row or
metric the results lack, or a failed run; rows and metrics only the results have are
reported as ``new`` and fail only with ``--fail-on-new``. ``--update`` rewrites the
reference from the results (atomically) after printing what moved.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli_args import Options, option, parse
from bench.input_checks import writable_file
from bench.preflight import check_command_line
from bench.report.regress_tolerances import (
    DEFAULT_NAME,
    Tolerance,
    Tolerances,
    load_tolerances,
    shown_path,
)
from bench.report.runs import read_runs
from bench.run import execute
from core.errors import ConfigError
from core.files import atomic_write_text
from core.paths import REPO_DIR, read_text

KEY_COLUMNS = ("method", "prompt", "seed", "seconds")
CSV_COLUMNS = (*KEY_COLUMNS, "metric", "value")
# Per-duration system values that do not depend on the machine (timings and memory do).
SYSTEM_KEYS = ("frames", "chunks", "kv_bytes", "tokens_per_head_mean", "tokens_per_head_max", "tokens_total")
FAILING = ("REGRESSION", "missing", "failed")

RowKey = tuple[str, str, int, float]  # method, prompt, seed, seconds
Values = dict[tuple[RowKey, str], float]  # (row, metric) -> value


@dataclass
class Results:
    """The results table of a runs directory, plus the rows of runs that failed."""

    values: Values
    failed: dict[tuple[str, str, int], str]  # (method, prompt, seed) -> the run's status ("failed: ...")
    seen: set[str] = field(default_factory=set)  # every metric key of the runs, skipped ones included

    @property
    def rows(self) -> set[RowKey]:
        return {row for row, _ in self.values}


def _row_key(method, prompt, seed, seconds) -> RowKey:
    return str(method), str(prompt), int(seed), float(seconds)


def load_results(root: Path, tolerances: Tolerances) -> Results:
    """One value per (method, prompt, seed, seconds, metric) from the finished runs under
    ``root`` (skipped metrics left out; read by the reports' one reader, bench/report/runs.py).
    Two runs with the same key are an error: the key does not name method parameters, so one
    runs directory holds one variant of each method."""
    results = Results({}, {})
    owner: dict[tuple[str, str, int], str] = {}
    for run_dir, summary in read_runs(Path(root)):
        if summary is None:  # staging, unfinished, or not a run summary (reported)
            continue
        if summary.key in owner:
            raise ConfigError(f"runs={str(root)!r}: {owner[summary.key]} and {run_dir.name} share method, prompt "
                              "and seed; allowed: one run per (method, prompt, seed) in a runs directory")
        owner[summary.key] = run_dir.name
        if not summary.ok:
            results.failed[summary.key] = summary.status
            continue
        for d in summary.durations:
            row = _row_key(*summary.key, d.seconds_requested)
            scalars = {k: v for k, v in d.values().items() if k in SYSTEM_KEYS or k in d.metrics}
            results.seen.update(scalars)
            for metric, value in scalars.items():
                if not tolerances.skipped(metric):
                    results.values[(row, metric)] = float(value) if value is not None else math.nan
    return results


def read_reference(path: Path) -> Values:
    """The reference CSV (columns method, prompt, seed, seconds, metric, value); a missing,
    binary or malformed file is bad input (a one-line ConfigError), never a regression."""
    if not Path(path).exists():
        raise ConfigError(f"reference={str(path)!r}: no such file; create it on purpose with --update")
    reader = csv.DictReader(io.StringIO(read_text(path, "reference")))
    allowed = f"allowed: the columns {', '.join(CSV_COLUMNS)}, seed an integer, seconds and value numbers"
    try:
        columns, records = tuple(reader.fieldnames or ()), list(reader)
    except csv.Error as err:
        raise ConfigError(f"reference={str(path)!r}: line {reader.line_num}: {err}; {allowed}") from None
    if columns != CSV_COLUMNS:
        raise ConfigError(f"reference={str(path)!r}: columns {list(columns)}; allowed: {', '.join(CSV_COLUMNS)}")
    values: Values = {}
    for line, rec in enumerate(records, start=2):
        try:
            if None in rec or None in rec.values():
                raise ValueError("wrong number of fields")
            row = _row_key(rec["method"], rec["prompt"], rec["seed"], rec["seconds"])
            values[(row, rec["metric"])] = float(rec["value"])
        except (TypeError, ValueError):
            raise ConfigError(f"reference={str(path)!r}: line {line}: {rec}: {allowed}") from None
    return values


def _fmt_value(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)  # shortest text that reads back to the same float


def write_reference(path: Path, values: Values) -> None:
    """Write the reference CSV atomically, sorted, with values that read back exactly."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for (row, metric), value in sorted(values.items()):
        method, prompt, seed, seconds = row
        writer.writerow([method, prompt, seed, _fmt_value(seconds), metric, _fmt_value(value)])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), buf.getvalue())


@dataclass
class Finding:
    """One compared value (or a whole row, metric ``*``) that is not unchanged."""

    status: str  # REGRESSION | missing | failed | moved | new
    row: RowKey
    metric: str
    reference: float | None = None
    current: float | None = None
    tolerance: Tolerance | None = None
    note: str = ""


def compare(reference: Values, results: Results, tolerances: Tolerances) -> tuple[list[Finding], int]:
    """Findings (failures first) and the number of values that are unchanged."""
    findings: list[Finding] = []
    ref_rows = {row for row, _ in reference}
    current = results.values
    unchanged = 0
    for row in sorted(ref_rows - results.rows):
        status = results.failed.get(row[:3])
        n = sum(1 for r, _ in reference if r == row)
        findings.append(Finding("failed" if status else "missing", row, "*",
                                note=status or f"row not in the results ({n} reference values)"))
    covered = {row[:3] for row in ref_rows}
    for run, status in sorted(results.failed.items()):
        if run not in covered:  # a run the reference does not have, failed: still a failure
            findings.append(Finding("failed", (*run, math.nan), "*", note=status))
    for row in sorted(results.rows - ref_rows):
        n = sum(1 for r, _ in current if r == row)
        findings.append(Finding("new", row, "*", note=f"not in the reference ({n} values)"))
    for (row, metric), ref in sorted(reference.items()):
        if row not in results.rows or tolerances.skipped(metric):
            continue
        tol = tolerances.for_metric(metric)
        if (row, metric) not in current:
            findings.append(Finding("missing", row, metric, ref, tolerance=tol, note="metric not in the results"))
            continue
        cur = current[(row, metric)]
        if cur == ref or (math.isnan(cur) and math.isnan(ref)):
            unchanged += 1
            continue
        ok = math.isfinite(cur) and math.isfinite(ref) and abs(cur - ref) <= tol.allowed(ref)
        findings.append(Finding("moved" if ok else "REGRESSION", row, metric, ref, cur, tol))
    for (row, metric), cur in sorted(current.items()):
        if row in ref_rows and (row, metric) not in reference:
            findings.append(Finding("new", row, metric, current=cur, note="metric not in the reference"))
    order = {"REGRESSION": 0, "failed": 1, "missing": 2, "moved": 3, "new": 4}
    findings.sort(key=lambda f: order[f.status])
    return findings, unchanged


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def format_findings(findings: list[Finding], limit: int) -> str:
    """A fixed-width table: status, row key, metric, reference, current, diff, relative diff, tolerance."""
    header = ("status", *KEY_COLUMNS, "metric", "reference", "current", "diff", "rel", "tolerance / note")
    lines = []
    for f in findings[:limit]:
        both = f.current is not None and f.reference is not None and math.isfinite(f.current - f.reference)
        diff = f.current - f.reference if both else math.nan
        rel = diff / abs(f.reference) if both and f.reference else math.nan
        seconds = "*" if math.isnan(f.row[3]) else f"{f.row[3]:g}"
        lines.append((f.status, f.row[0], f.row[1], str(f.row[2]), seconds, f.metric,
                      _num(f.reference), _num(f.current), f"{diff:+.3g}" if both else "",
                      f"{100 * rel:+.3g}%" if both and math.isfinite(rel) else "",
                      str(f.tolerance) if f.tolerance and f.status in ("REGRESSION", "moved") else f.note))
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    text = ["  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in (header, *lines)]
    if len(findings) > limit:
        text.append(f"... and {len(findings) - limit} more (--show N to list them)")
    return "\n".join(text)


def run_sweep(overrides: tuple[str, ...] | list[str], out_dir: Path) -> None:
    """Run a sweep (``forcebench run -m`` overrides) in this process; finished runs are skipped."""
    if not overrides:
        raise ConfigError("sweep=[]: the tolerance file names no sweep; allowed: a list of `forcebench run -m` overrides")
    for run in check_command_line([*overrides, f"out_dir={out_dir}", "progress=false"], multirun=True):
        execute(run)


def _summary_line(findings: list[Finding], unchanged: int, fail_on_new: bool) -> tuple[str, bool]:
    count = {s: sum(f.status == s for f in findings) for s in ("REGRESSION", "missing", "failed", "moved", "new")}
    failing = FAILING + (("new",) if fail_on_new else ())
    failed = any(count[s] for s in failing)
    line = (f"{count['REGRESSION']} outside tolerance, {count['missing']} missing, {count['failed']} failed, "
            f"{count['moved']} moved within tolerance, {count['new']} new, {unchanged} unchanged")
    return line, failed


@dataclass
class RegressOptions(Options):
    """``forcebench regress``'s options."""

    runs: str = option(help="directory holding run directories (one sweep)", positional=True)
    tolerances: str = option(str(REPO_DIR / "conf" / "regress" / f"{DEFAULT_NAME}.yaml"), "tolerance file")
    reference: str | None = option(None, "reference CSV (default: results/reference/<name of the tolerance file>.csv)")
    sweep: bool = option(False, "first run the tolerance file's sweep into RUNS (finished runs are skipped)")
    update: bool = option(False, "(re)write the reference from the results, on purpose")
    fail_on_new: bool = option(False, "also fail on rows or metrics the reference lacks")
    show: int = option(60, "list at most this many findings", minimum=0)


def main(argv: list[str]) -> int:
    """``forcebench regress``: 0 when nothing regressed (or after --update), 1 on a regression."""
    args = parse("forcebench regress", argv, RegressOptions,
                 description="Compare the runs under RUNS with a committed reference table.")
    tolerances = load_tolerances(Path(args.tolerances))
    reference_path = Path(args.reference or REPO_DIR / "results" / "reference" / f"{Path(args.tolerances).stem}.csv")
    if args.update:
        writable_file(reference_path, "reference")
    runs = Path(args.runs)
    if args.sweep:
        run_sweep(tolerances.sweep, runs)
    results = load_results(runs, tolerances)
    if not results.values and not results.failed:
        raise ConfigError(f"runs={args.runs!r}: no finished run directories found there")
    reference = read_reference(reference_path) if reference_path.exists() or not args.update else {}
    findings, unchanged = compare(reference, results, tolerances)
    for entry in tolerances.unmatched(results.seen | {m for _, m in reference}):
        print(f"note: {tolerances.path}: {entry!r} matches no metric of the results or the reference")
    print(f"reference {shown_path(reference_path)} ({len(reference)} values); results {shown_path(runs)} ({len(results.values)} values, "
          f"{len(results.rows)} rows); tolerances {tolerances.path}")
    if findings:
        print(format_findings(findings, args.show))
    line, failed = _summary_line(findings, unchanged, args.fail_on_new)
    if args.update:
        if results.failed:
            (method, prompt, seed), status = next(iter(results.failed.items()))
            raise ConfigError(f"--update: the run of {method}/{prompt}/s{seed} has status {status!r}; "
                              "allowed: a reference from finished runs only")
        write_reference(reference_path, results.values)
        print(f"regress: wrote {len(results.values)} values ({len(results.rows)} rows) to {shown_path(reference_path)}")
        return 0
    print(f"regress: {'FAIL' if failed else 'PASS'}: {line}")
    return 1 if failed else 0
