"""Run directories: deterministic names, atomic writes, provenance, finished-run detection.

A run is one (model, method and its parameters, prompt entry, seed, sampler settings)
rollout. Its directory name is readable and ends in a hash of that key, so reruns find
it. Files are written into a staging directory next to it, which replaces the final
directory by renames only once everything is written: a failed or killed run never
touches a finished result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import kernels
from core.errors import ConfigError
from core.files import atomic_write_bytes, read_json_object
from core.paths import REPO_DIR

VERSIONED_PACKAGES = ("torch", "numpy", "hydra-core", "omegaconf", "triton", "pandas", "diffusers")


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def file_digest(path: Path) -> str:
    """First 12 hex digits of the SHA-1 of a file, or of a folder's files (sorted relative
    names and contents: a diffusers checkpoint folder); weights identity in run keys."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha1()
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def run_name(key: dict[str, Any]) -> str:
    """``<model>__<method>__<prompt id>__s<seed>__<hash of the whole key>``."""
    return f"{key['model']['name']}__{key['method']['name']}__{key['prompt']['id']}__s{key['seed']}__{key_hash(key)}"


def save_weights(path: Path, module: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    """A module's state dict as a safetensors file, written atomically."""
    from safetensors.torch import save

    weights = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save(weights, metadata=metadata))


def read_summary(run_dir: Path) -> dict | None:
    return read_json_object(run_dir / "summary.json")


def _pid_alive(pid: str) -> bool:
    return not pid.isdigit() or Path(f"/proc/{pid}").exists()


def remove_stale_stages(root: Path) -> list[str]:
    """Remove staging and replaced directories (``.tmp-<pid>``, ``.old-<pid>``) under ``root``
    left by processes of this machine that no longer run (a killed sweep); returns their names."""
    removed = []
    for stale in list(root.glob("*.tmp-*")) + list(root.glob("*.old-*")):
        if stale.is_dir() and not _pid_alive(stale.name.rsplit("-", 1)[-1]):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale.name)
    return removed


def safe_child(root: Path, name: str) -> Path:
    """``root / name``, refusing a name that would leave ``root`` (``..``, ``/``, a link)."""
    path = Path(root) / name
    if path.resolve().parent != Path(root).resolve() or name in ("", ".", ".."):
        raise ConfigError(f"run directory name {name!r} leaves out_dir {str(root)!r}; allowed: a plain name inside it")
    return path


LOCK_STALE_S = 600.0  # a claim not refreshed for this long belongs to a process that is gone


@contextlib.contextmanager
def claim(final: Path) -> Iterator[Callable[[], None] | None]:
    """Claim the run ``final`` for this process: an exclusive ``<run>.lock`` file holding the
    owner's host and pid. Yields a ``refresh`` callable (call it while working, so the claim
    stays fresh), or None when a live process holds the claim. A claim whose owner on this
    host is dead, or that was not refreshed for LOCK_STALE_S seconds, is taken over."""
    lock = final.with_name(f"{final.name}.lock")
    owner = json.dumps({"host": platform.node(), "pid": os.getpid()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _claim_is_stale(lock):
                yield None
                return
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(owner)
        break
    else:
        yield None
        return
    try:
        yield lambda: os.utime(lock)
    finally:
        lock.unlink(missing_ok=True)


def _claim_is_stale(lock: Path) -> bool:
    try:
        holder = json.loads(lock.read_text() or "{}")
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    if age > LOCK_STALE_S:
        return True
    return holder.get("host") == platform.node() and not _pid_alive(str(holder.get("pid", "")))


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``final`` (renames only)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--verify", "--quiet", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def provenance(device: torch.device) -> dict[str, Any]:
    versions = {"python": sys.version.split()[0]}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git": git_state(), "versions": versions, "device": device_name(device),
            "attention": kernels.resolve(device), "platform": platform.platform()}
