"""The engine manifest (engine_manifest.json) and the load-time check against the GPU present.

A TensorRT engine only runs on the GPU architecture - and with the TensorRT-LLM
version - it was built with; loading it elsewhere fails deep inside TensorRT or,
worse, runs with mistuned kernels. The manifest written next to the engine records
what it was built for, and `verify_engine_for_this_gpu` refuses a mismatch up front
with the exact command that builds the right engine.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict

from compound_models.engines.gpu import GpuIdentity, detect_gpu, installed_tensorrt_llm_version

MANIFEST_NAME = "engine_manifest.json"
FORMAT_VERSION = 1


class EngineMismatch(RuntimeError):
    """The engine in a directory cannot run here (other GPU, other TensorRT-LLM, bad files)."""


class ManifestGpu(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str  # truss Accelerator name, e.g. H100
    device_name: str  # nvidia-smi name of the build GPU
    compute_capability: str  # "9.0"
    count: int = 1


class ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: Optional[str] = None
    revision: Optional[str] = None  # the resolved commit when known
    local_path: Optional[str] = None


class EngineManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    gpu: ManifestGpu
    tensorrt_llm_version: str
    model: ManifestModel
    quantization: str
    tensor_parallel_size: int
    spec_ref: str
    spec_hash: str
    spec: dict
    files: dict[str, str]  # relative path -> sha256
    built_at: str
    smoke: Optional[dict] = None


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checksum_tree(engine_dir: Path) -> dict[str, str]:
    """sha256 of every file under engine_dir except the manifest itself."""
    engine_dir = Path(engine_dir)
    return {
        str(path.relative_to(engine_dir)): sha256_file(path)
        for path in sorted(engine_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


def write_manifest(engine_dir: Path, **fields) -> EngineManifest:
    """Checksum the engine dir and write engine_manifest.json into it."""
    engine_dir = Path(engine_dir)
    fields.setdefault("built_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    manifest = EngineManifest(files=checksum_tree(engine_dir), **fields)
    (engine_dir / MANIFEST_NAME).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return manifest


def read_manifest(engine_dir: Path) -> EngineManifest:
    path = Path(engine_dir) / MANIFEST_NAME
    if not path.is_file():
        raise EngineMismatch(
            f"no {MANIFEST_NAME} in {engine_dir}: not an engine built by `compound engines build`, "
            "so it cannot be checked against this GPU; rebuild it with `compound engines build`"
        )
    try:
        return EngineManifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise EngineMismatch(f"{path} is not a valid engine manifest: {exc}") from None


def _rebuild_command(gpu: GpuIdentity, engine_dir: Path) -> str:
    target = gpu.type_name or "<gpu type>"
    out = Path(engine_dir).parent / target.lower()
    return f"compound engines build --gpu {target} --out {out}"


def verify_engine_for_this_gpu(
    engine_dir: Path,
    gpu: Optional[GpuIdentity] = None,
    tensorrt_llm_version: Optional[str] = None,
    verify_checksums: bool = True,
) -> EngineManifest:
    """Refuse an engine that was not built for the GPU (and TensorRT-LLM) present.

    gpu=None detects the GPU (nvidia-smi, else pynvml); tensorrt_llm_version=None reads the
    installed tensorrt-llm version. Returns the manifest when the engine fits; raises
    EngineMismatch naming both sides and the exact build command otherwise.
    """
    engine_dir = Path(engine_dir)
    manifest = read_manifest(engine_dir)
    present = gpu if gpu is not None else detect_gpu()
    runtime_version = tensorrt_llm_version or installed_tensorrt_llm_version()
    built = manifest.gpu
    built_desc = f"{built.type} ({built.device_name}, sm{built.compute_capability.replace('.', '')})"
    rebuild = _rebuild_command(present, engine_dir)

    problems = []
    if present.type_name != built.type or present.compute_capability != built.compute_capability:
        problems.append(f"it was built for {built_desc} but this machine has {present.describe()}")
    if runtime_version is None:
        problems.append(
            f"it was built with TensorRT-LLM {manifest.tensorrt_llm_version} but tensorrt-llm is not "
            "installed here"
        )
    elif runtime_version != manifest.tensorrt_llm_version:
        problems.append(
            f"it was built with TensorRT-LLM {manifest.tensorrt_llm_version} but TensorRT-LLM "
            f"{runtime_version} is installed"
        )
    if present.count < manifest.tensor_parallel_size:
        problems.append(
            f"it needs {manifest.tensor_parallel_size} GPUs (tensor parallel) but {present.count} are present"
        )
    if problems:
        raise EngineMismatch(
            f"refusing the TensorRT-LLM engine in {engine_dir}: " + "; ".join(problems)
            + f". Engines only run where they were built for. Build one for this machine: {rebuild}"
        )
    _verify_files(engine_dir, manifest, verify_checksums)
    return manifest


def _verify_files(engine_dir: Path, manifest: EngineManifest, verify_checksums: bool) -> None:
    for relative, expected in manifest.files.items():
        path = engine_dir / relative
        if not path.is_file():
            raise EngineMismatch(f"engine file {path} listed in the manifest is missing")
        if verify_checksums and sha256_file(path) != expected:
            raise EngineMismatch(
                f"engine file {path} does not match its manifest sha256 (corrupt or replaced); "
                "re-download or rebuild the engine"
            )
