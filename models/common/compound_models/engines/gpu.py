"""GPU types: what each one can run, and which one this machine has.

Names are truss's `Accelerator` values (L4, A10G, A100, H100, ...) so a spec, the
generated `resources.accelerator` and the manifest all speak the same names. The
catalog is kept here (not read from truss) because this module ships inside the served
Truss, where the truss package is not guaranteed; a test keeps the two in sync.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class GpuType:
    name: str  # truss Accelerator value
    compute_capability: str  # "major.minor"
    memory_gib: int
    # substrings of `nvidia-smi --query-gpu=name` that identify this type
    device_names: tuple[str, ...]

    @property
    def sm(self) -> int:
        major, minor = self.compute_capability.split(".")
        return int(major) * 10 + int(minor)

    @property
    def supports_fp8(self) -> bool:  # Ada (sm89) and Hopper (sm90) onwards
        return self.sm >= 89

    @property
    def supports_fp4(self) -> bool:  # Blackwell onwards
        return self.sm >= 100

    @property
    def supports_trt_llm(self) -> bool:  # TensorRT-LLM needs Ampere (sm80) or newer
        return self.sm >= 80


# Order matters for device-name matching: more specific entries first.
CATALOG: tuple[GpuType, ...] = (
    GpuType("T4", "7.5", 16, ("T4",)),
    GpuType("V100", "7.0", 16, ("V100",)),
    GpuType("A10G", "8.6", 24, ("A10G",)),
    GpuType("A100_40GB", "8.0", 40, ("A100-SXM4-40GB", "A100-PCIE-40GB", "A100 40GB")),
    GpuType("A100", "8.0", 80, ("A100",)),
    GpuType("L40S", "8.9", 48, ("L40S",)),
    GpuType("L4", "8.9", 24, ("L4",)),
    GpuType("H100_40GB", "9.0", 40, ("H100 80GB HBM3 MIG 3g.40gb", "H100 MIG 3g.40gb")),
    GpuType("H100", "9.0", 80, ("H100",)),
    GpuType("H200", "9.0", 141, ("H200",)),
    GpuType("B200", "10.0", 180, ("B200",)),
    GpuType("B300", "10.3", 288, ("B300",)),
    GpuType("GB300", "10.3", 288, ("GB300",)),
    GpuType("RTX_PRO_6000", "12.0", 96, ("RTX PRO 6000",)),
)
BY_NAME = {gpu.name: gpu for gpu in CATALOG}


class UnknownGpu(ValueError):
    pass


class NoGpu(RuntimeError):
    pass


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def gpu_type(name: str) -> GpuType:
    """Look up a GPU type by truss name, case-insensitively ('h100' -> H100)."""
    key = name.strip().upper().replace("-", "_")
    if key in BY_NAME:
        return BY_NAME[key]
    raise UnknownGpu(
        f"unknown GPU '{name}'.{did_you_mean(key, BY_NAME)} Known GPU types: {', '.join(BY_NAME)}"
    )


def gpu_type_for_device(device_name: str) -> Optional[GpuType]:
    """Map an nvidia-smi device name ('NVIDIA H100 80GB HBM3') to its GPU type, if known."""
    normalized = " ".join(device_name.split())
    for gpu in CATALOG:
        for needle in gpu.device_names:
            # word-ish match so "L4" does not match "L40S"
            if re.search(rf"(^|[\s\-]){re.escape(needle)}($|[\s\-])", normalized, re.IGNORECASE):
                return gpu
    return None


@dataclass(frozen=True)
class GpuIdentity:
    """The GPU(s) a process runs on: what the engine manifest is compared against."""

    device_name: str  # as nvidia-smi reports it, e.g. "NVIDIA A10G"
    compute_capability: str  # "8.6"
    count: int = 1

    @property
    def gpu_type(self) -> Optional[GpuType]:
        return gpu_type_for_device(self.device_name)

    @property
    def type_name(self) -> Optional[str]:
        found = self.gpu_type
        return found.name if found else None

    def describe(self) -> str:
        sm = self.compute_capability.replace(".", "")
        label = self.type_name or "an unsupported GPU type"
        count = f"{self.count}x " if self.count != 1 else ""
        return f"{count}{label} ({self.device_name}, sm{sm})"


def parse_nvidia_smi(output: str) -> GpuIdentity:
    """Parse `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` output."""
    rows = [line.split(",") for line in output.strip().splitlines() if line.strip()]
    if not rows:
        raise NoGpu("nvidia-smi listed no GPUs")
    names = {row[0].strip() for row in rows}
    caps = {row[1].strip() for row in rows if len(row) > 1}
    if len(names) != 1 or len(caps) != 1:
        raise NoGpu(f"mixed GPU types on one machine are not supported: {sorted(names)}")
    return GpuIdentity(names.pop(), caps.pop(), count=len(rows))


def detect_gpu() -> GpuIdentity:
    """The GPUs present, via nvidia-smi, else pynvml. Raises NoGpu when neither finds one."""
    if shutil.which("nvidia-smi"):
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode == 0 and result.stdout.strip():
            return parse_nvidia_smi(result.stdout)
    try:
        import pynvml  # optional: nvidia-ml-py
    except ImportError:
        raise NoGpu("no NVIDIA GPU found: nvidia-smi is not available and pynvml is not installed") from None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            raise NoGpu("pynvml found no NVIDIA GPU")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else name
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        return GpuIdentity(name, f"{major}.{minor}", count=count)
    except pynvml.NVMLError as exc:
        raise NoGpu(f"no NVIDIA GPU found: {exc}") from None


def installed_tensorrt_llm_version() -> Optional[str]:
    """The installed tensorrt-llm version without importing it (the import takes seconds and needs CUDA)."""
    for dist in ("tensorrt-llm", "tensorrt_llm"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
