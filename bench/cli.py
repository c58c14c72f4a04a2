"""The ``forcebench`` command.

    forcebench run [-m] [hydra overrides...]   generate and record runs (Hydra)
    forcebench table [RUNS_DIR]                method x duration table of finished runs
    forcebench train backbone|encoder [...]    train the toy backbone / the toy-clip encoder
    forcebench evaluate-toy [...]              acceptance measurements of the toy backbone
    forcebench profile [...]                   head roles / labels of the toy backbone per --classifier
    forcebench audit-heads [...]               do the head classifiers agree, hold, cost, matter? (results/head_audit/)
    forcebench leaderboard [...]               leaderboard tables, plots and HTML from run directories
    forcebench validate RUNS_DIR [...]         are the negative controls beaten? (exit 0 yes, 1 no, 2 bad input)
    forcebench regress [...]                   compare a results table with the committed reference
    forcebench bench-kernels [...]             time the attention kernels against SDPA and FlexAttention
    forcebench time-chunks [...]               per-chunk latency of every method, interleaved, idle and loaded
"""

from __future__ import annotations

import sys

from core.errors import ConfigError

MULTIRUN_FLAGS = {"-m", "--multirun"}


def cmd_run(argv: list[str]) -> int:
    from bench.preflight import check_command_line, hydra_context, multirun_overrides

    if any(a in ("-h", "--help", "--cfg", "-c", "--info", "-i") or a.startswith("--cfg") for a in argv):
        return _hydra(argv)
    multirun = any(a in MULTIRUN_FLAGS for a in argv)
    overrides = [a for a in argv if a not in MULTIRUN_FLAGS]
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise ConfigError(f"run: unsupported flag {flags[0]!r}; allowed: -m/--multirun and key=value overrides")
    code = [a for a in overrides if "_target_" in a.split("=", 1)[0] or a.lstrip("+~").startswith("hydra.callbacks")]
    if code:  # these name a callable that Hydra would import and call
        raise ConfigError(f"run: override {code[0]!r} names code to run; allowed: callbacks and _target_ "
                          "only from the repository's config files")
    runs = check_command_line(overrides, multirun)
    check_run_requests(runs)
    if multirun:
        with hydra_context():
            overrides = multirun_overrides(overrides)
        _hydra(["-m", *overrides])
    else:
        _hydra(overrides)
    return report_failures(runs)


def _hydra(argv: list[str]) -> int:
    from bench.run import hydra_entry

    sys.argv = ["forcebench run", *argv]
    hydra_entry()
    return 0


def check_run_requests(runs: list) -> None:
    """Every job's request against its run directories, before any work (one line on a conflict)."""
    from bench.run import check_requests

    for run in runs:
        check_requests(run)


def report_failures(runs: list) -> int:
    """Exit status of ``run``: 0 when no run failed, 3 (reasons listed last) when some did."""
    from bench.run import failed_runs

    lines = failed_runs(runs)
    for line in lines:
        print(f"forcebench: failed run {line}", file=sys.stderr)
    return 3 if lines else 0


def cmd_table(argv: list[str]) -> int:
    from bench.report.table import main as table_main

    return table_main(argv)


def cmd_train(argv: list[str]) -> int:
    targets = {"backbone": "bench.tools.train_backbone", "encoder": "bench.tools.train_encoder"}
    if not argv or argv[0] not in targets:
        given = argv[0] if argv else ""
        raise ConfigError(f"train {given!r}: unknown target; allowed: {', '.join(targets)}")
    import importlib

    return importlib.import_module(targets[argv[0]]).main(argv[1:])


def cmd_profile(argv: list[str]) -> int:
    from bench.tools.profile import main as profile_main

    return profile_main(argv)


def cmd_audit_heads(argv: list[str]) -> int:
    from bench.tools.head_audit import main as audit_main

    return audit_main(argv)


def cmd_evaluate_toy(argv: list[str]) -> int:
    from bench.tools.evaluate_toy import main as evaluate_main

    return evaluate_main(argv)


def cmd_leaderboard(argv: list[str]) -> int:
    from bench.report.leaderboard import main as leaderboard_main

    return leaderboard_main(argv)


def cmd_validate(argv: list[str]) -> int:
    from bench.report.validity import main as validate_main

    return validate_main(argv)


def cmd_regress(argv: list[str]) -> int:
    from bench.report.regress import main as regress_main

    return regress_main(argv)


def cmd_bench_kernels(argv: list[str]) -> int:
    from bench.tools.kernel_bench import main as bench_main

    return bench_main(argv)


def cmd_time_chunks(argv: list[str]) -> int:
    from bench.tools.chunk_timing import main as timing_main

    return timing_main(argv)


COMMANDS = {"run": cmd_run, "table": cmd_table, "train": cmd_train, "evaluate-toy": cmd_evaluate_toy,
            "profile": cmd_profile, "audit-heads": cmd_audit_heads, "leaderboard": cmd_leaderboard,
            "validate": cmd_validate, "regress": cmd_regress, "bench-kernels": cmd_bench_kernels,
            "time-chunks": cmd_time_chunks}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = ", ".join(COMMANDS)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"forcebench: unknown command {argv[0]!r}; allowed: {known}", file=sys.stderr)
            return 2
        print(__doc__)
        return 0
    try:
        return COMMANDS[argv[0]](argv[1:])
    except ConfigError as err:
        print(f"forcebench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
