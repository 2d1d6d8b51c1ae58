"""The machine a benchmark ran on (recorded with every result) and which baselines it can run.

The figures depend on the machine, its load and the thread count: compare runs only from the
same machine (docs/benchmarks.md).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from typing import Any, Sequence

import numpy as np
import torch


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(devices: Sequence[str]) -> dict[str, Any]:
    """The machine, library versions, thread count and load average; the CUDA devices among ``devices``."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews the figures
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    try:
        import gymnasium

        info["gymnasium_version"] = gymnasium.__version__
    except ImportError:  # pragma: no cover - rlmem itself needs gymnasium
        pass
    popgym_version = _popgym_version()
    if popgym_version is not None:
        info["popgym_version"] = popgym_version
    cuda = [d for d in devices if torch.device(d).type == "cuda"]
    if cuda:
        info["cuda_devices"] = {d: torch.cuda.get_device_name(torch.device(d)) for d in cuda}
        info["cuda_version"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return info


def _popgym_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("popgym")
    except (ImportError, PackageNotFoundError):
        return None


def popgym_available() -> bool:
    """Whether popgym, the env baseline, is installed."""
    try:
        import popgym.envs.repeat_previous  # noqa: F401
    except ImportError:
        return False
    return True


def sb3_available() -> bool:
    """Whether sb3-contrib, the training baseline, is installed."""
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        return False
    return True
