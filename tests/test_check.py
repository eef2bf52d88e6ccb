"""`compound check`: truss's own config validation + image build context, per Truss."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compound.paths import MODELS_DIR

ECHO_DIR = Path(__file__).parent / "trusses" / "echo"


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compound.cli", "check", *args],
                          capture_output=True, text=True, timeout=300)


def test_every_compound_truss_passes_check():
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("llm", "whisper", "json", "tts"):
        assert f"ok   {name}" in result.stdout


@pytest.fixture
def broken_copy(tmp_path) -> Path:
    """A copy of models/ (so relative external_package_dirs still resolve) with echo inside."""
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR / "common", models / "common")
    shutil.copytree(ECHO_DIR, models / "echo")
    config = yaml.safe_load((models / "echo" / "config.yaml").read_text())
    config["external_package_dirs"] = ["../common"]
    (models / "echo" / "config.yaml").write_text(yaml.safe_dump(config))
    return models / "echo"


def _edit_config(truss: Path, **changes) -> None:
    config = yaml.safe_load((truss / "config.yaml").read_text())
    config.update(changes)
    (truss / "config.yaml").write_text(yaml.safe_dump(config))


def test_intact_copy_passes(broken_copy):
    result = run_check(str(broken_copy))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("breakage, expected", [
    (lambda t: _edit_config(t, resources={"accelerator": "B9000"}), "invalid Truss config"),
    (lambda t: _edit_config(t, python_version="py26"), "invalid Truss config"),
    (lambda t: _edit_config(t, external_package_dirs=["../nowhere"]), "'../nowhere' is not a directory"),
    (lambda t: (t / "model" / "model.py").unlink(), "model.py is missing"),
    (lambda t: (t / "model" / "model.py").write_text("class Model:\n    def load(self)\n"), "syntax error"),
    (lambda t: (t / "config.yaml").write_text("model_name: [unclosed\n"), "invalid Truss config"),
], ids=["unknown-accelerator", "bad-python-version", "missing-package-dir", "no-model-file",
        "syntax-error", "yaml-error"])
def test_broken_copy_fails_with_a_clear_message(broken_copy, breakage, expected):
    breakage(broken_copy)
    result = run_check(str(broken_copy))
    assert result.returncode == 1
    assert "FAIL" in result.stdout and expected in result.stdout.replace("\n", " ")


def test_unknown_name_lists_valid_trusses():
    result = run_check("nope")
    assert result.returncode == 2 and "valid: llm, whisper, json, tts" in result.stderr
