"""Shared helpers of the benchmark scripts: where the data is, the machine fingerprint, the result JSON."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def data_dir(override: str | None = None) -> Path:
    """The shared benchmark data: ``override``, else ``$SLIVER_DATA``, else ``<repo>/../shared/data``."""
    return Path(override or os.environ.get("SLIVER_DATA") or REPO.parent / "shared" / "data")


def nb201_data_dir(override: str | None = None) -> Path:
    """:func:`data_dir`, or a clean skip when it holds no NAS-Bench-201 table."""
    root = data_dir(override)
    if not (root / "nb201" / "nb201_acc_latency.csv").is_file():
        skip(f"NAS-Bench-201 table nb201/nb201_acc_latency.csv not found under {root}")
    return root


def ofa_data_dir(override: str | None = None) -> Path:
    """:func:`data_dir`, or a clean skip when it holds no OFA predictors."""
    root = data_dir(override)
    if not (root / "ofa").is_dir():
        skip(f"{root / 'ofa'} is absent")
    return root


def skip(reason: str) -> None:
    """Say why the benchmark cannot run here (e.g. data absent) and exit cleanly."""
    print(f"SKIPPED: {reason}")
    raise SystemExit(0)


def fingerprint() -> dict:
    """CPU model, cores, OS, Python and (if installed) torch versions of this machine."""
    from sliver.measure.hardware import available_cores, cpu_model

    cpu, cores = cpu_model(), available_cores()
    out = {"cpu": cpu, "cores": cores, "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def write_result(name: str, figure, target: str, met: bool, table, argv: list[str] | None = None, **extra) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the fields every benchmark reports.

    ``argv`` is the command line to record (default ``sys.argv``): a benchmark given a secret, such as a
    store URL with its password, passes its arguments with the secret hidden.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    argv = list(sys.argv if argv is None else argv)
    record = {
        "name": name,
        "figure": figure,
        "target": target,
        "met": bool(met),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(argv[0], REPO), *argv[1:]]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": fingerprint(),
        **extra,
        "table": table,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def available_targets(names, **overrides) -> tuple[dict, dict[str, str]]:
    """The hardware targets among ``names`` (presets) that can run here, and why each other one cannot (printed)."""
    from sliver.measure.hardware import HardwareTarget

    targets, skipped = {}, {}
    for name in names:
        target = HardwareTarget.preset(name, **overrides)
        reason = target.unavailable_reason()
        if reason:
            skipped[name] = reason
            print(f"{name}: skipped, {reason}")
        else:
            targets[name] = target
    return targets, skipped
