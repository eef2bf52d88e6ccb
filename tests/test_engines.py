"""TensorRT-LLM engine specs, plans, engine-builder variants, CI matrix and the manifest check.

No GPU and no tensorrt-llm exist here: plans and truss validation run for real; the
manifest-vs-GPU check runs against fake GPU identities (tests named "fake").
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from compound.commands.engines import SPECS_DIR, VARIANTS_DIR, engines, render_variants
from compound_models.engines import gpu as gpu_mod
from compound_models.engines.gpu import CATALOG, GpuIdentity, detect_gpu, gpu_type_for_device, parse_nvidia_smi
from compound_models.engines.manifest import (
    MANIFEST_NAME,
    EngineMismatch,
    verify_engine_for_this_gpu,
    write_manifest,
)
from compound_models.engines.plan import gpu_specs, plan_for_gpu
from compound_models.engines.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
REQUIRED_GPUS = {"L4", "A10G", "A100", "H100", "H200"}
GPU_SPECS = sorted(gpu_specs(SPECS_DIR))
SMOKE_SPEC = SPECS_DIR / "smollm2-smoke.yaml"


def run_cli(*args):
    return CliRunner().invoke(engines, list(args))


def assert_clean_failure(result, *needles):
    """Non-zero exit, the message on stderr, no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in stderr: {result.stderr}"


def spec_variant(tmp_path: Path, base: str, name: str, edit) -> Path:
    data = yaml.safe_load((SPECS_DIR / base).read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- specs and plans


def test_a_spec_exists_for_every_required_gpu():
    assert REQUIRED_GPUS <= set(GPU_SPECS)
    assert load_spec(SMOKE_SPEC).model.repo == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("gpu", GPU_SPECS)
def test_plan_succeeds_for_every_gpu_spec(gpu):
    result = run_cli("plan", "--gpu", gpu.lower())
    assert result.exit_code == 0, result.output
    assert f"engine plan: {gpu}" in result.output
    assert "1 plan(s) valid" in result.output


@pytest.mark.parametrize("gpu", GPU_SPECS)
def test_fp8_only_where_the_hardware_has_it(gpu):
    plan = plan_for_gpu(SPECS_DIR, gpu)
    quant = plan.spec.build.quantization
    if gpu in ("A10G", "A100"):
        assert quant == "no_quant"
    if gpu in ("L4", "H100", "H200"):
        assert quant.startswith("fp8")
    assert plan.spec.model.repo == "meta-llama/Llama-3.2-3B-Instruct"
    assert plan.spec.build.max_input_len <= plan.spec.build.max_seq_len


@pytest.mark.parametrize("gpu", sorted(REQUIRED_GPUS))
def test_smoke_spec_plans_for_any_gpu(gpu):
    result = run_cli("plan", "--spec", "smollm2-smoke", "--gpu", gpu, "--json")
    assert result.exit_code == 0, result.output
    (plan,) = json.loads(result.output)
    assert plan["gpu"] == gpu
    assert plan["truss_config"]["resources"]["accelerator"] == gpu


def test_plan_all_makes_no_network_connection(monkeypatch):
    attempts = []  # recorded, not just raised: a library could swallow the exception

    def refuse(sock, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    result = run_cli("plan")
    assert result.exit_code == 0, result.output
    assert f"{len(GPU_SPECS)} plan(s) valid" in result.output
    assert attempts == []


def test_plan_via_subprocess_succeeds_and_fails_cleanly(tmp_path):
    compound = Path(sys.executable).parent / "compound"
    ok = subprocess.run([str(compound), "engines", "plan"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "plan(s) valid" in ok.stdout
    bad = spec_variant(tmp_path, "a10g.yaml", "a10g-fp8.yaml", lambda d: d["build"].update(quantization="fp8"))
    failed = subprocess.run([str(compound), "engines", "plan", "--spec", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0
    assert "FP8" in failed.stderr and "A10G" in failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout


# ---------------------------------------------------------------- bad input


def test_unknown_gpu_name_suggests_the_closest():
    assert_clean_failure(run_cli("plan", "--gpu", "H10"), "unknown GPU 'H10'", "Did you mean 'H100'")


def test_unknown_gpu_in_a_spec_fails(tmp_path):
    bad = spec_variant(tmp_path, "h100.yaml", "typo-gpu.yaml", lambda d: d.update(gpu="H1000"))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "unknown GPU 'H1000'", "Did you mean 'H100'")


def test_gpu_without_a_spec_lists_the_specs():
    assert_clean_failure(run_cli("plan", "--gpu", "L40S"), "no engine spec for L40S", "H100")


def test_trt_llm_unsupported_gpu_is_refused_by_truss():
    assert_clean_failure(run_cli("plan", "--spec", "smollm2-smoke", "--gpu", "T4"), "truss rejects", "T4")


@pytest.mark.parametrize("gpu_spec", ["a10g.yaml", "a100.yaml"])
@pytest.mark.parametrize("quant", ["fp8", "fp8_kv"])
def test_fp8_on_a_gpu_without_fp8_fails(tmp_path, gpu_spec, quant):
    bad = spec_variant(tmp_path, gpu_spec, "bad.yaml", lambda d: d["build"].update(quantization=quant))
    gpu = yaml.safe_load((SPECS_DIR / gpu_spec).read_text())["gpu"]
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "truss rejects", gpu, "FP8")


def test_fp4_on_hopper_fails(tmp_path):
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml", lambda d: d["build"].update(quantization="fp4"))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "FP4")


def test_unknown_quantization_lists_the_choices(tmp_path):
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml", lambda d: d["build"].update(quantization="int3"))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "build.quantization", "'fp8_kv'")


def test_tensor_parallel_larger_than_gpu_count_fails(tmp_path):
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml", lambda d: d["build"].update(tensor_parallel_size=2))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)),
                         "tensor_parallel_size=2 is larger than gpu_count=1")


def test_gpu_count_without_matching_tensor_parallel_is_refused_by_truss(tmp_path):
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml", lambda d: d.update(gpu_count=2))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "truss rejects",
                         "Tensor parallelism and GPU count must be the same")


def test_tensor_parallel_two_on_two_gpus_plans(tmp_path):
    def edit(d):
        d["gpu_count"] = 2
        d["build"]["tensor_parallel_size"] = 2

    good = spec_variant(tmp_path, "h100.yaml", "tp2.yaml", edit)
    result = run_cli("plan", "--spec", str(good), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["truss_config"]["resources"]["accelerator"] == "H100:2"


def test_missing_model_repo_fails(tmp_path):
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml", lambda d: d.update(model={}))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "no checkpoint", "model.repo")


def test_missing_local_checkpoint_fails(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml", lambda d: d.update(model={"local_path": str(missing)}))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), str(missing), "does not exist")


def test_local_checkpoint_without_config_json_fails(tmp_path):
    (tmp_path / "ckpt").mkdir()
    bad = spec_variant(tmp_path, "h100.yaml", "bad.yaml",
                       lambda d: d.update(model={"local_path": str(tmp_path / "ckpt")}))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "no config.json")


def test_local_checkpoint_present_plans(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    good = spec_variant(tmp_path, "h100.yaml", "local.yaml",
                        lambda d: d.update(model={"local_path": str(tmp_path / "ckpt")}))
    result = run_cli("plan", "--spec", str(good))
    assert result.exit_code == 0, result.output
    assert "local:" in result.output


@pytest.mark.parametrize("section,typo,suggestion", [
    ("build", "max_batch_sise", "max_batch_size"),
    ("kv_cache", "free_gpu_mem_fraction", "free_gpu_memory_fraction"),
    (None, "tensor_paralel_size", None),
])
def test_spec_typo_reports_did_you_mean(tmp_path, section, typo, suggestion):
    def edit(d):
        (d[section] if section else d)[typo] = 4

    bad = spec_variant(tmp_path, "l4.yaml", "typo.yaml", edit)
    result = run_cli("plan", "--spec", str(bad))
    where = f"{section}.{typo}" if section else typo
    assert_clean_failure(result, f"unknown key '{where}'")
    if suggestion:
        assert f"Did you mean '{suggestion}'" in result.stderr


def test_spec_for_another_gpu_is_refused():
    assert_clean_failure(run_cli("plan", "--spec", str(SPECS_DIR / "h100.yaml"), "--gpu", "A10G"),
                         "this spec is for H100, not A10G")


def test_gpu_less_spec_needs_gpu():
    assert_clean_failure(run_cli("plan", "--spec", "smollm2-smoke"), "sets no gpu", "--gpu")


def test_unknown_spec_name_suggests_the_closest():
    assert_clean_failure(run_cli("plan", "--spec", "smollm2-smok"), "Did you mean 'smollm2-smoke'")


def test_input_longer_than_sequence_fails(tmp_path):
    bad = spec_variant(tmp_path, "l4.yaml", "bad.yaml", lambda d: d["build"].update(max_input_len=10000))
    assert_clean_failure(run_cli("plan", "--spec", str(bad)), "max_input_len=10000 exceeds")


def test_spec_hash_tracks_content(tmp_path):
    spec = load_spec(SPECS_DIR / "h100.yaml")
    assert spec.spec_hash() == load_spec(SPECS_DIR / "h100.yaml").spec_hash()
    edited = spec_variant(tmp_path, "h100.yaml", "e.yaml", lambda d: d["build"].update(max_batch_size=64))
    assert load_spec(edited).spec_hash() != spec.spec_hash()


# ---------------------------------------------------------------- build


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_llm") is not None, reason="tensorrt-llm is installed")
def test_build_without_tensorrt_llm_fails_fast(tmp_path):
    out = tmp_path / "engine"
    result = run_cli("build", "--gpu", "L4", "--out", str(out))
    assert_clean_failure(result, "tensorrt-llm is not installed")
    assert not out.exists()


def test_build_refuses_an_invalid_plan_before_tensorrt_llm(tmp_path):
    result = run_cli("build", "--gpu", "T4", "--out", str(tmp_path / "e"))
    assert_clean_failure(result, "no engine spec for T4")


def test_llm_kwargs_map_the_spec_onto_a_fake_llm_api():
    """The spec -> TensorRT-LLM LLM-API argument mapping, against a fake `llmapi` namespace."""
    from compound_models.engines.build import _llm_kwargs

    class Record(SimpleNamespace):
        def __init__(self, **kw):
            super().__init__(**kw)

    fake = SimpleNamespace(
        BuildConfig=Record, KvCacheConfig=Record, QuantConfig=Record, CalibConfig=Record,
        QuantAlgo=SimpleNamespace(FP8="FP8", NVFP4="NVFP4"),
    )
    h100 = _llm_kwargs(plan_for_gpu(SPECS_DIR, "H100"), fake)
    assert h100["model"] == "meta-llama/Llama-3.2-3B-Instruct"
    assert h100["revision"] == "0cb88a4f764b7a12671c53f0838cd831a0843b95"
    assert (h100["quant_config"].quant_algo, h100["quant_config"].kv_cache_quant_algo) == ("FP8", "FP8")
    assert h100["build_config"].max_batch_size == 128 and h100["build_config"].max_seq_len == 16384
    assert h100["kv_cache_config"].free_gpu_memory_fraction == 0.9
    a10g = _llm_kwargs(plan_for_gpu(SPECS_DIR, "A10G"), fake)
    assert "quant_config" not in a10g and a10g["dtype"] == "bfloat16"


# ---------------------------------------------------------------- engine-builder variants


def test_generated_variants_match_committed():
    rendered = render_variants(SPECS_DIR)
    assert {str(p) for p in rendered} == {g.lower() for g in GPU_SPECS}
    for relative, text in rendered.items():
        committed = VARIANTS_DIR / relative / "config.yaml"
        assert committed.is_file(), f"{committed} missing: run `compound engines generate`"
        assert committed.read_text() == text, f"{committed} is stale: run `compound engines generate`"
    assert run_cli("generate", "--check").exit_code == 0


def test_generate_check_detects_a_stale_variant(tmp_path):
    assert run_cli("generate", "--out", str(tmp_path)).exit_code == 0
    target = tmp_path / "h100" / "config.yaml"
    target.write_text(target.read_text().replace("max_batch_size: 128", "max_batch_size: 64"))
    assert_clean_failure(run_cli("generate", "--out", str(tmp_path), "--check"), "stale", str(target))


@pytest.mark.parametrize("gpu", GPU_SPECS)
def test_truss_loads_each_variant_with_its_own_validation(gpu):
    from truss.base.truss_config import TrussConfig

    config = TrussConfig.from_yaml(VARIANTS_DIR / gpu.lower() / "config.yaml")
    spec = load_spec(SPECS_DIR / f"{gpu.lower()}.yaml")
    assert config.resources.accelerator.accelerator.value == gpu
    assert config.trt_llm.build.quantization_type.value == spec.build.quantization
    assert config.trt_llm.build.max_seq_len == spec.build.max_seq_len
    assert config.trt_llm.build.tensor_parallel_count == spec.build.tensor_parallel_size
    assert config.trt_llm.build.checkpoint_repository.revision == spec.model.revision
    assert config.model_metadata["engine_spec_hash"] == spec.spec_hash()


# ---------------------------------------------------------------- CI workflows


def test_engines_workflow_matrix_matches_the_specs():
    workflow = yaml.safe_load((REPO / "ci/github/engines.yml").read_text())
    build = workflow["jobs"]["build"]
    assert sorted(build["strategy"]["matrix"]["gpu"]) == GPU_SPECS
    assert "${{ matrix.gpu }}" in build["runs-on"] and "self-hosted" in build["runs-on"]
    commands = "\n".join(step.get("run", "") for step in build["steps"])
    for needed in ("compound engines build --gpu ${{ matrix.gpu }}", "compound engines verify",
                   "compound engines smoke"):
        assert needed in commands
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in build["steps"])
    image = build["container"]["image"]
    assert image == workflow["env"]["TRTLLM_IMAGE"]


def test_tests_workflow_runs_the_ci_script():
    workflow = yaml.safe_load((REPO / "ci/github/tests.yml").read_text())
    runs = [step.get("run") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "bash .ci/run" in runs


# ---------------------------------------------------------------- GPU identities


def test_gpu_catalog_names_are_truss_accelerators():
    from truss.base.truss_config import Accelerator

    assert {g.name for g in CATALOG} <= {a.value for a in Accelerator}
    assert REQUIRED_GPUS <= {g.name for g in CATALOG}


@pytest.mark.parametrize("device,expected", [
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA A10G", "A10G"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100-SXM4-40GB", "A100_40GB"),
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100"), ("NVIDIA H200", "H200"),
    ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", "H100_40GB"), ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_fake_device_names_map_to_gpu_types(device, expected):
    found = gpu_type_for_device(device)
    assert (found.name if found else None) == expected


def test_fake_nvidia_smi_output_parses_with_count():
    identity = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA H100 80GB HBM3, 9.0\n")
    assert identity == GpuIdentity("NVIDIA H100 80GB HBM3", "9.0", 2)
    assert identity.type_name == "H100"


def _fake_nvidia_smi(tmp_path, monkeypatch, line: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{line}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_fake_nvidia_smi_is_detected(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA A10G, 8.6")
    assert detect_gpu() == GpuIdentity("NVIDIA A10G", "8.6", 1)


# ---------------------------------------------------------------- manifest vs GPU

FAKE_H100 = GpuIdentity("NVIDIA H100 80GB HBM3", "9.0", 1)
FAKE_A10G = GpuIdentity("NVIDIA A10G", "8.6", 1)


@pytest.fixture
def fake_h100_engine(tmp_path):
    """An engine dir with a manifest as `compound engines build` writes it on an H100."""
    engine = tmp_path / "engines" / "h100"
    engine.mkdir(parents=True)
    (engine / "rank0.engine").write_bytes(os.urandom(4096))
    (engine / "config.json").write_text('{"pretrained_config": {}}')
    spec = load_spec(SPECS_DIR / "h100.yaml")
    write_manifest(
        engine,
        gpu={"type": "H100", "device_name": FAKE_H100.device_name, "compute_capability": "9.0", "count": 1},
        tensorrt_llm_version="1.0.0",
        model={"repo": spec.model.repo, "revision": spec.model.revision},
        quantization=spec.build.quantization,
        tensor_parallel_size=1,
        spec_ref="engines/specs/h100.yaml",
        spec_hash=spec.spec_hash(),
        spec=spec.model_dump(mode="json"),
    )
    return engine


def test_fake_manifest_records_checksums_and_spec(fake_h100_engine):
    manifest = json.loads((fake_h100_engine / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"rank0.engine", "config.json"}
    assert all(len(digest) == 64 for digest in manifest["files"].values())
    assert manifest["gpu"]["compute_capability"] == "9.0"
    assert manifest["spec_hash"] == load_spec(SPECS_DIR / "h100.yaml").spec_hash()


def test_fake_matching_gpu_is_accepted(fake_h100_engine):
    manifest = verify_engine_for_this_gpu(fake_h100_engine, FAKE_H100, tensorrt_llm_version="1.0.0")
    assert manifest.gpu.type == "H100"


def test_fake_h100_engine_on_a10g_is_refused_with_the_build_command(fake_h100_engine):
    with pytest.raises(EngineMismatch) as info:
        verify_engine_for_this_gpu(fake_h100_engine, FAKE_A10G, tensorrt_llm_version="1.0.0")
    message = str(info.value)
    assert "built for H100 (NVIDIA H100 80GB HBM3, sm90)" in message
    assert "this machine has A10G (NVIDIA A10G, sm86)" in message
    assert f"compound engines build --gpu A10G --out {fake_h100_engine.parent / 'a10g'}" in message


def test_fake_other_tensorrt_llm_version_is_refused(fake_h100_engine):
    with pytest.raises(EngineMismatch) as info:
        verify_engine_for_this_gpu(fake_h100_engine, FAKE_H100, tensorrt_llm_version="1.1.0")
    message = str(info.value)
    assert "TensorRT-LLM 1.0.0" in message and "TensorRT-LLM 1.1.0 is installed" in message
    assert "compound engines build --gpu H100 --out" in message


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_llm") is not None, reason="tensorrt-llm is installed")
def test_fake_gpu_without_tensorrt_llm_installed_is_refused(fake_h100_engine):
    with pytest.raises(EngineMismatch, match="tensorrt-llm is not installed here"):
        verify_engine_for_this_gpu(fake_h100_engine, FAKE_H100)


def test_fake_too_few_gpus_for_tensor_parallel(fake_h100_engine):
    manifest_path = fake_h100_engine / MANIFEST_NAME
    data = json.loads(manifest_path.read_text())
    data["tensor_parallel_size"] = 2
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(EngineMismatch, match="needs 2 GPUs"):
        verify_engine_for_this_gpu(fake_h100_engine, FAKE_H100, tensorrt_llm_version="1.0.0")


def test_fake_corrupt_engine_file_is_refused(fake_h100_engine):
    (fake_h100_engine / "rank0.engine").write_bytes(b"not the engine")
    with pytest.raises(EngineMismatch, match="does not match its manifest sha256"):
        verify_engine_for_this_gpu(fake_h100_engine, FAKE_H100, tensorrt_llm_version="1.0.0")


def test_fake_missing_engine_file_is_refused(fake_h100_engine):
    (fake_h100_engine / "rank0.engine").unlink()
    with pytest.raises(EngineMismatch, match="rank0.engine listed in the manifest is missing"):
        verify_engine_for_this_gpu(fake_h100_engine, FAKE_H100, tensorrt_llm_version="1.0.0")


def test_fake_engine_dir_without_manifest_is_refused(tmp_path):
    with pytest.raises(EngineMismatch, match="no engine_manifest.json"):
        verify_engine_for_this_gpu(tmp_path, FAKE_H100, tensorrt_llm_version="1.0.0")


def test_fake_detected_gpu_is_used_when_none_given(fake_h100_engine, tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA A10G, 8.6")
    with pytest.raises(EngineMismatch, match="this machine has A10G"):
        verify_engine_for_this_gpu(fake_h100_engine, tensorrt_llm_version="1.0.0")


def test_fake_gpu_verify_cli(fake_h100_engine):
    ok = run_cli("verify", str(fake_h100_engine), "--fake-gpu", "NVIDIA H100 80GB HBM3,9.0",
                 "--tensorrt-llm-version", "1.0.0")
    assert ok.exit_code == 0, ok.output
    bad = run_cli("verify", str(fake_h100_engine), "--fake-gpu", "NVIDIA A10G,8.6",
                  "--tensorrt-llm-version", "1.0.0")
    assert_clean_failure(bad, "built for H100", "compound engines build --gpu A10G")


def test_fake_no_gpu_is_reported(monkeypatch, tmp_path, fake_h100_engine):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no nvidia-smi
    monkeypatch.setitem(sys.modules, "pynvml", None)  # and no pynvml
    with pytest.raises(gpu_mod.NoGpu, match="no NVIDIA GPU found"):
        verify_engine_for_this_gpu(fake_h100_engine, tensorrt_llm_version="1.0.0")


def test_manifest_check_imports_neither_truss_nor_tensorrt_llm():
    """It ships inside the LLM Truss, whose image has neither guaranteed."""
    code = ("import sys, compound_models.engines.manifest; "
            "bad = [m for m in ('truss', 'tensorrt_llm') if m in sys.modules]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
