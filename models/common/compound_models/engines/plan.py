"""Resolve a spec + GPU into a build plan, refusing anything that cannot build or run.

Order of checks: GPU name -> checkpoint -> our own limits/parallelism checks -> truss's
trt_llm validation of the rendered engine-builder config -> our GPU-capability checks
(for what truss's lists do not cover). All run before anything is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from compound_models.engines.gpu import GpuType, UnknownGpu, gpu_type
from compound_models.engines.spec import EngineSpec, SpecError, load_spec
from compound_models.engines.truss_variant import TrussRejects, truss_variant_config, validate_with_truss

MAX_GPUS_PER_NODE = 8  # TensorRT-LLM TP runs inside one node here; no multi-node specs


class PlanError(ValueError):
    """The spec cannot be built for the requested GPU; the message says why."""


@dataclass
class EnginePlan:
    spec_path: Path
    spec_ref: str  # how the plan names its spec (repo-relative when possible)
    spec: EngineSpec
    gpu: GpuType
    truss_config: dict
    notes: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> str:
        model = self.spec.model
        if model.repo:
            return f"{model.repo}@{model.revision or 'main'}"
        return f"local:{model.local_path}"

    def rows(self) -> list[tuple[str, str]]:
        s, b, kv = self.spec, self.spec.build, self.spec.kv_cache
        return [
            ("spec", self.spec_ref),
            ("spec hash", s.spec_hash()[:16]),
            ("gpu", f"{self.gpu.name} x{s.gpu_count} (sm{self.gpu.sm}, {self.gpu.memory_gib} GiB)"),
            ("checkpoint", self.checkpoint),
            ("quantization", b.quantization),
            ("dtype", b.dtype),
            ("tensor parallel", str(b.tensor_parallel_size)),
            ("max batch size", str(b.max_batch_size)),
            ("max input len", str(b.max_input_len)),
            ("max seq len", str(b.max_seq_len)),
            ("max num tokens", str(b.max_num_tokens)),
            ("kv cache", f"paged={kv.paged} free_gpu_mem={kv.free_gpu_memory_fraction} "
                         f"block_reuse={kv.enable_block_reuse}"),
            ("truss validation", "ok (truss TrussConfig / trt_llm_validation)"),
        ]

    def to_dict(self) -> dict:
        return {
            "spec": self.spec_ref,
            "spec_hash": self.spec.spec_hash(),
            "gpu": self.gpu.name,
            "compute_capability": self.gpu.compute_capability,
            "engine": self.spec.model_dump(mode="json"),
            "truss_config": self.truss_config,
            "notes": self.notes,
        }


def _spec_ref(path: Path, root: Optional[Path]) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve())) if root else str(path)
    except ValueError:
        return str(path)


def _check_checkpoint(spec: EngineSpec, where: str) -> None:
    model = spec.model
    if model.repo and model.local_path:
        raise PlanError(f"{where}: set either model.repo or model.local_path, not both")
    if not model.repo and not model.local_path:
        raise PlanError(
            f"{where}: no checkpoint: model.repo (a Hugging Face repo id) is not set and "
            "model.local_path is not set"
        )
    if model.local_path:
        path = Path(os.path.expanduser(model.local_path))
        if not path.is_dir():
            raise PlanError(f"{where}: model.local_path {path} does not exist (checkpoint missing)")
        if not (path / "config.json").is_file():
            raise PlanError(f"{where}: model.local_path {path} has no config.json: not a Hugging Face checkpoint")
    if model.repo and model.revision in (None, "", "main"):
        # allowed, but not reproducible: the manifest still records the resolved commit
        pass


def _check_limits(spec: EngineSpec, gpu: GpuType, where: str) -> None:
    b = spec.build
    tp = b.tensor_parallel_size
    if tp > spec.gpu_count:
        raise PlanError(
            f"{where}: build.tensor_parallel_size={tp} is larger than gpu_count={spec.gpu_count}: "
            f"tensor parallelism needs one {gpu.name} per rank (set gpu_count: {tp})"
        )
    if spec.gpu_count > MAX_GPUS_PER_NODE:
        raise PlanError(f"{where}: gpu_count={spec.gpu_count} exceeds {MAX_GPUS_PER_NODE} GPUs per node")
    if b.max_input_len > b.max_seq_len:
        raise PlanError(
            f"{where}: build.max_input_len={b.max_input_len} exceeds build.max_seq_len={b.max_seq_len}"
        )
    if not spec.kv_cache.paged and b.max_num_tokens < b.max_input_len:
        raise PlanError(
            f"{where}: without a paged KV cache (no chunked context) build.max_num_tokens="
            f"{b.max_num_tokens} must be >= build.max_input_len={b.max_input_len}"
        )
    if b.calibration.max_seq_len % 64 or b.calibration.size % 64:
        raise PlanError(f"{where}: build.calibration.size and max_seq_len must be multiples of 64")


def _check_gpu_capability(spec: EngineSpec, gpu: GpuType, where: str) -> None:
    """Capability rules by compute capability, covering GPUs truss's fixed lists miss."""
    quant = spec.build.quantization
    if not gpu.supports_trt_llm:
        raise PlanError(f"{where}: TensorRT-LLM needs sm80 or newer; {gpu.name} is sm{gpu.sm}")
    if quant.startswith("fp8") and not gpu.supports_fp8:
        raise PlanError(
            f"{where}: quantization {quant} needs FP8 hardware (sm89+: L4, L40S, H100, H200, B200); "
            f"{gpu.name} is sm{gpu.sm}. Use no_quant for {gpu.name}."
        )
    if quant.startswith("fp4") and not gpu.supports_fp4:
        raise PlanError(
            f"{where}: quantization {quant} needs FP4 hardware (sm100+: B200); {gpu.name} is sm{gpu.sm}"
        )


def resolve_gpu(spec: EngineSpec, requested: Optional[str], where: str) -> GpuType:
    try:
        wanted = gpu_type(requested) if requested else None
        declared = gpu_type(spec.gpu) if spec.gpu else None
    except UnknownGpu as exc:
        raise PlanError(f"{where}: {exc}") from None
    if declared and wanted and declared != wanted:
        raise PlanError(
            f"{where}: this spec is for {declared.name}, not {wanted.name}; "
            f"use `compound engines plan --gpu {wanted.name}` to pick the {wanted.name} spec"
        )
    gpu = declared or wanted
    if gpu is None:
        raise PlanError(f"{where}: the spec sets no gpu; pass --gpu (e.g. --gpu L4)")
    return gpu


def plan_spec(spec: EngineSpec, spec_path: Path, gpu: Optional[str] = None,
              root: Optional[Path] = None) -> EnginePlan:
    where = _spec_ref(spec_path, root)
    gpu_t = resolve_gpu(spec, gpu, where)
    _check_checkpoint(spec, where)
    _check_limits(spec, gpu_t, where)
    config = truss_variant_config(spec, gpu_t, where)
    try:
        validate_with_truss(config)
    except TrussRejects as exc:
        raise PlanError(f"{where}: truss rejects this config for {gpu_t.name}: {exc}") from None
    _check_gpu_capability(spec, gpu_t, where)
    notes = []
    if spec.model.repo and spec.model.revision in (None, "main"):
        notes.append("model.revision is not pinned; the manifest records the commit actually built")
    return EnginePlan(spec_path, where, spec, gpu_t, config, notes)


def load_specs(specs_dir: Path) -> list[tuple[Path, EngineSpec]]:
    """Every spec under `specs_dir` (sorted), each validated; the first invalid one raises."""
    paths = sorted(Path(specs_dir).glob("*.yaml"))
    if not paths:
        raise PlanError(f"no engine specs (*.yaml) in {specs_dir}")
    return [(path, load_spec(path)) for path in paths]


def gpu_specs(specs_dir: Path) -> dict[str, tuple[Path, EngineSpec]]:
    """GPU type name -> its spec, for the specs that pin a GPU (one spec per GPU type)."""
    found: dict[str, tuple[Path, EngineSpec]] = {}
    for path, spec in load_specs(specs_dir):
        if not spec.gpu:
            continue
        try:
            name = gpu_type(spec.gpu).name
        except UnknownGpu as exc:
            raise PlanError(f"{path}: {exc}") from None
        if name in found:
            raise PlanError(f"two specs for {name}: {found[name][0]} and {path}; keep one per GPU type")
        found[name] = (path, spec)
    return found


def plan_for_gpu(specs_dir: Path, gpu: str, root: Optional[Path] = None) -> EnginePlan:
    try:
        wanted = gpu_type(gpu)
    except UnknownGpu as exc:
        raise PlanError(str(exc)) from None
    specs = gpu_specs(specs_dir)
    if wanted.name not in specs:
        raise PlanError(
            f"no engine spec for {wanted.name} in {specs_dir}; specs exist for: "
            f"{', '.join(specs) or 'none'}. Add {specs_dir}/{wanted.name.lower()}.yaml"
        )
    path, spec = specs[wanted.name]
    return plan_spec(spec, path, wanted.name, root)


def plan_all(specs_dir: Path, root: Optional[Path] = None) -> list[EnginePlan]:
    return [plan_spec(spec, path, None, root) for path, spec in gpu_specs(specs_dir).values()]


def plan_file(spec_path: Path, gpu: Optional[str] = None, root: Optional[Path] = None) -> EnginePlan:
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise PlanError(str(exc)) from None
    return plan_spec(spec, Path(spec_path), gpu, root)
