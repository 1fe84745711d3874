"""Machine description recorded with every result."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from benchmarks.adapters import Adapter


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info(adapters: list[Adapter], device: str) -> dict[str, object]:
    info: dict[str, object] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "libraries": {a.name: a.version for a in adapters},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def header_lines(info: dict[str, object]) -> list[str]:
    libs = info.get("libraries") or {}
    assert isinstance(libs, dict)
    versions = ", ".join(f"{k} {v}" for k, v in libs.items()) or "none"
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores, "
        f"{info['torch_threads']} torch threads, device {info['device']}",
        f"python {info['python']}, torch {info['torch']}; {versions}",
    ]
    if "gpu" in info:
        lines.append(f"gpu: {info['gpu']}")
    return lines
