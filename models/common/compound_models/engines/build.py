"""Build a TensorRT-LLM engine from a plan with TensorRT-LLM's LLM API, then write its manifest.

tensorrt_llm is imported lazily and only here: it needs Linux + CUDA + a GPU and is never
installed on CPU boxes, where `require_tensorrt_llm` fails fast with a clear message
before anything is downloaded.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path
from typing import Callable, ContextManager, Optional

from compound_models.engines.gpu import GpuIdentity, NoGpu, detect_gpu
from compound_models.engines.manifest import EngineManifest, read_manifest, verify_engine_for_this_gpu, write_manifest
from compound_models.engines.plan import EnginePlan

Step = Callable[[str], ContextManager[None]]


class BuildUnavailable(RuntimeError):
    """This machine cannot build the engine (no tensorrt-llm, no GPU, wrong GPU)."""


@contextlib.contextmanager
def _quiet_step(_label: str):
    yield


def require_tensorrt_llm():
    """Import tensorrt_llm or explain why it cannot be used here."""
    if importlib.util.find_spec("tensorrt_llm") is None:
        raise BuildUnavailable(
            "tensorrt-llm is not installed on this machine, so engines cannot be built here. "
            "Engine builds run on a Linux machine with an NVIDIA GPU and CUDA: "
            "pip install -e '.[gpu]' there (or use the CI workflow ci/github/engines.yml). "
            "`compound engines plan` works without it."
        )
    try:
        return importlib.import_module("tensorrt_llm")
    except Exception as exc:  # CUDA/driver problems surface at import time
        raise BuildUnavailable(f"tensorrt-llm is installed but cannot be imported here: {exc}") from None


def require_matching_gpu(plan: EnginePlan, present: Optional[GpuIdentity] = None) -> GpuIdentity:
    """Engines are compiled for the GPU that builds them: the builder must be the target type."""
    try:
        present = present or detect_gpu()
    except NoGpu as exc:
        raise BuildUnavailable(f"cannot build a {plan.gpu.name} engine: {exc}") from None
    if present.type_name != plan.gpu.name:
        raise BuildUnavailable(
            f"cannot build a {plan.gpu.name} engine on {present.describe()}: TensorRT compiles for the "
            f"GPU it runs on. Run this build on a {plan.gpu.name} runner, or build for this GPU with "
            f"--gpu {present.type_name or '<its type>'}"
        )
    if present.count < plan.spec.build.tensor_parallel_size:
        raise BuildUnavailable(
            f"tensor_parallel_size={plan.spec.build.tensor_parallel_size} needs that many GPUs; "
            f"{present.count} present"
        )
    return present


def resolve_revision(repo: str, revision: Optional[str]) -> Optional[str]:
    """The commit sha `revision` points to, so the manifest pins exactly what was built."""
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo, revision=revision).sha or revision
    except Exception:
        return revision


def _llm_api():
    try:  # TensorRT-LLM >= 1.0: the TensorRT-engine LLM lives here (tensorrt_llm.LLM is PyTorch)
        from tensorrt_llm._tensorrt_engine import LLM
    except ImportError:  # 0.x: tensorrt_llm.LLM builds TensorRT engines
        from tensorrt_llm import LLM
    from tensorrt_llm import llmapi

    return LLM, llmapi


def _llm_kwargs(plan: EnginePlan, llmapi) -> dict:
    spec, limits, kv = plan.spec, plan.spec.build, plan.spec.kv_cache
    build_config = llmapi.BuildConfig()
    build_config.max_batch_size = limits.max_batch_size
    build_config.max_input_len = limits.max_input_len
    build_config.max_seq_len = limits.max_seq_len
    build_config.max_num_tokens = limits.max_num_tokens
    if not kv.paged:
        from tensorrt_llm.bindings import KVCacheType

        build_config.kv_cache_type = KVCacheType.CONTINUOUS
    kv_config = {"free_gpu_memory_fraction": kv.free_gpu_memory_fraction, "enable_block_reuse": kv.enable_block_reuse}
    if kv.host_cache_bytes:
        kv_config["host_cache_size"] = kv.host_cache_bytes
    kwargs = {
        "tensor_parallel_size": limits.tensor_parallel_size,
        "dtype": limits.dtype,
        "build_config": build_config,
        "kv_cache_config": llmapi.KvCacheConfig(**kv_config),
    }
    quant = limits.quantization
    if quant != "no_quant":
        algo = llmapi.QuantAlgo.FP8 if quant.startswith("fp8") else llmapi.QuantAlgo.NVFP4
        kv_algo = llmapi.QuantAlgo.FP8 if quant.endswith("_kv") else None
        kwargs["quant_config"] = llmapi.QuantConfig(quant_algo=algo, kv_cache_quant_algo=kv_algo)
        calib = limits.calibration
        kwargs["calib_config"] = llmapi.CalibConfig(
            calib_dataset=calib.dataset, calib_batches=calib.size, calib_max_seq_length=calib.max_seq_len
        )
    if spec.model.repo:
        kwargs["model"] = spec.model.repo
        if spec.model.revision:
            kwargs["revision"] = spec.model.revision
    else:
        kwargs["model"] = str(Path(spec.model.local_path).expanduser())
    return kwargs


def _generate(llm, llmapi, prompt: str, max_tokens: int) -> str:
    params = llmapi.SamplingParams(max_tokens=max_tokens, top_k=1)
    text = llm.generate([prompt], params)[0].outputs[0].text
    if not text.strip():
        raise RuntimeError(f"smoke generation produced no text for prompt {prompt!r}")
    return text


def _save_tokenizer(llm, out_dir: Path) -> None:
    """Keep the tokenizer next to the engine so the engine dir is self-contained."""
    if (out_dir / "tokenizer_config.json").exists():
        return
    tokenizer = getattr(llm, "tokenizer", None)
    inner = getattr(tokenizer, "tokenizer", tokenizer)
    if hasattr(inner, "save_pretrained"):
        inner.save_pretrained(str(out_dir))


def build_engine(plan: EnginePlan, out_dir: Path, smoke: bool = True, step: Step = _quiet_step) -> EngineManifest:
    out_dir = Path(out_dir)
    with step("checking tensorrt-llm"):
        trtllm = require_tensorrt_llm()
    with step("checking the GPU present"):
        present = require_matching_gpu(plan)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BuildUnavailable(f"--out {out_dir} is not empty; pick a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = plan.spec.model
    revision = model.revision
    if model.repo:
        with step(f"resolving {model.repo}@{model.revision or 'main'}"):
            revision = resolve_revision(model.repo, model.revision)
    LLM, llmapi = _llm_api()
    with step(f"download, convert{' + calibrate' if plan.spec.build.quantization != 'no_quant' else ''} and build"):
        llm = LLM(**_llm_kwargs(plan, llmapi))
    try:
        with step(f"saving engine to {out_dir}"):
            llm.save(str(out_dir))
            _save_tokenizer(llm, out_dir)
        smoke_result = None
        if smoke:
            with step("smoke generation"):
                text = _generate(llm, llmapi, plan.spec.smoke.prompt, plan.spec.smoke.max_tokens)
                smoke_result = {"prompt": plan.spec.smoke.prompt, "text": text}
    finally:
        shutdown = getattr(llm, "shutdown", None)
        if shutdown:
            shutdown()
    with step("checksums + manifest"):
        return write_manifest(
            out_dir,
            gpu={"type": plan.gpu.name, "device_name": present.device_name,
                 "compute_capability": present.compute_capability, "count": present.count},
            tensorrt_llm_version=trtllm.__version__,
            model={"repo": model.repo, "revision": revision, "local_path": model.local_path},
            quantization=plan.spec.build.quantization,
            tensor_parallel_size=plan.spec.build.tensor_parallel_size,
            spec_ref=plan.spec_ref,
            spec_hash=plan.spec.spec_hash(),
            spec=plan.spec.model_dump(mode="json"),
            smoke=smoke_result,
        )


def smoke_engine(engine_dir: Path, prompt: Optional[str] = None, max_tokens: Optional[int] = None) -> str:
    """Load a built engine from disk (after the GPU check) and generate a few tokens."""
    require_tensorrt_llm()
    manifest = verify_engine_for_this_gpu(engine_dir)
    smoke_spec = manifest.spec.get("smoke", {})
    LLM, llmapi = _llm_api()
    tokenizer = str(engine_dir) if (Path(engine_dir) / "tokenizer_config.json").exists() else manifest.model.repo
    llm = LLM(model=str(engine_dir), tokenizer=tokenizer)
    try:
        return _generate(llm, llmapi, prompt or smoke_spec.get("prompt", "Hello"),
                         max_tokens or smoke_spec.get("max_tokens", 8))
    finally:
        shutdown = getattr(llm, "shutdown", None)
        if shutdown:
            shutdown()


__all__ = ["BuildUnavailable", "build_engine", "smoke_engine", "require_tensorrt_llm", "read_manifest"]
