"""Engine specs: one YAML file per GPU type (engines/specs/*.yaml), strictly typed.

Every section forbids unknown keys, so a typo (`max_batch_sise`) fails with a
did-you-mean instead of silently building with a default.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Optional, Type

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from compound_models.engines.gpu import did_you_mean

# truss's `trt_llm.build.quantization_type` names (TrussTRTLLMQuantizationType) for the
# schemes we can build with TensorRT-LLM's QuantConfig; truss's legacy int8/int4 ones
# are rejected by Baseten on push, so they are not offered.
Quantization = Literal["no_quant", "fp8", "fp8_kv", "fp4", "fp4_kv"]


class SpecError(ValueError):
    """A spec file is missing, unreadable or invalid; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Where the checkpoint comes from: a Hugging Face repo (pinned revision) or a local dir."""

    repo: Optional[str] = None
    revision: Optional[str] = None
    local_path: Optional[str] = None
    # Baseten secret / env var holding the HF token for gated repos (Llama is gated)
    hf_token_secret: str = "hf_access_token"


class Calibration(_Strict):
    """Post-training quantization calibration (fp8/fp4 only)."""

    dataset: str = "abisee/cnn_dailymail"
    size: int = Field(default=512, ge=64, le=16384)
    max_seq_len: int = Field(default=1024, ge=64, le=16384)


class BuildLimits(_Strict):
    quantization: Quantization = "no_quant"
    dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    max_batch_size: int = Field(default=64, ge=1, le=2048)
    max_input_len: int = Field(default=4096, ge=1)
    max_seq_len: int = Field(default=8192, ge=1, le=1048576)
    max_num_tokens: int = Field(default=8192, gt=64, le=1048576)
    tensor_parallel_size: int = Field(default=1, ge=1)
    calibration: Calibration = Calibration()


class KvCache(_Strict):
    paged: bool = True
    free_gpu_memory_fraction: float = Field(default=0.9, gt=0, le=1)
    enable_block_reuse: bool = True
    # bytes of host RAM for offloaded KV blocks; None = no offload
    host_cache_bytes: Optional[int] = Field(default=None, ge=1)


class Smoke(_Strict):
    prompt: str = "Name three primary colors."
    max_tokens: int = Field(default=16, ge=1, le=256)


class EngineSpec(_Strict):
    """One engine: a model built for one GPU type (or, when `gpu` is unset, for whichever GPU
    `--gpu` names — used by the small smoke spec)."""

    description: str = ""
    gpu: Optional[str] = None
    gpu_count: int = Field(default=1, ge=1)
    model: ModelSource = ModelSource()
    build: BuildLimits = BuildLimits()
    kv_cache: KvCache = KvCache()
    smoke: Smoke = Smoke()
    served_model_name: Optional[str] = None

    @pydantic.field_validator("model", "build", "kv_cache", "smoke", mode="before")
    @classmethod
    def _empty_section_is_defaults(cls, value):
        # `model:` with every line commented out parses as None; treat it as an empty section
        return {} if value is None else value

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the spec: the engine's reproducibility key."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _fields_at(model: Type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at `loc` (the path of an offending key) in the spec schema."""
    current: Type[BaseModel] = model
    for part in loc[:-1]:
        field = current.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def _format_validation_error(source: str, exc: pydantic.ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _fields_at(EngineSpec, loc)
            hint = did_you_mean(str(loc[-1]), allowed)
            lines.append(f"unknown key '{where}'.{hint} Allowed here: {', '.join(allowed)}")
        else:
            lines.append(f"{where}: {error['msg']}")
    return f"{source}: invalid engine spec:\n  " + "\n  ".join(lines)


def parse_spec(data: object, source: str = "<spec>") -> EngineSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: an engine spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return EngineSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SpecError(_format_validation_error(source, exc)) from None


def load_spec(path: Path) -> EngineSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"engine spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, str(path))
