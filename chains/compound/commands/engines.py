"""`compound engines`: plan, build, verify and smoke TensorRT-LLM engines per GPU type,
and generate the Baseten engine-builder Truss variants from the same specs.

Specs live in engines/specs/*.yaml (one per GPU type, plus a GPU-less smoke spec).
Every failure is a ClickException: message on stderr, non-zero exit, no traceback.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from compound.paths import ENGINES_DIR, MODELS_DIR, REPO_ROOT
from compound_models.engines.gpu import GpuIdentity, NoGpu, UnknownGpu
from compound_models.engines.plan import EnginePlan, PlanError, plan_all, plan_file, plan_for_gpu
from compound_models.engines.spec import SpecError
from compound_models.engines.truss_variant import VARIANTS_SUBDIR, render_variant_yaml, variant_dir_name

SPECS_DIR = ENGINES_DIR / "specs"
VARIANTS_DIR = MODELS_DIR / "llm" / VARIANTS_SUBDIR

console = Console(soft_wrap=True)

# errors that are the user's input or this machine, never a bug: print them, no traceback
_EXPECTED = (PlanError, SpecError, UnknownGpu, NoGpu)


@contextlib.contextmanager
def _clean_errors():
    from compound_models.engines.build import BuildUnavailable
    from compound_models.engines.manifest import EngineMismatch

    try:
        yield
    except (*_EXPECTED, BuildUnavailable, EngineMismatch) as exc:
        raise click.ClickException(str(exc)) from None


def _spec_path(spec: str, specs_dir: Path) -> Path:
    """--spec takes a file path or a spec name in the specs dir (`smollm2-smoke`)."""
    candidate = Path(spec)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    named = specs_dir / f"{spec}.yaml"
    if named.is_file():
        return named
    from compound_models.engines.gpu import did_you_mean

    names = [path.stem for path in sorted(specs_dir.glob("*.yaml"))]
    raise click.ClickException(
        f"no engine spec '{spec}' (not a file, not in {specs_dir}).{did_you_mean(spec, names)} "
        f"Specs: {', '.join(names)}"
    )


def resolve_plans(gpu: Optional[str], spec: Optional[str], specs_dir: Path) -> list[EnginePlan]:
    if spec:
        return [plan_file(_spec_path(spec, specs_dir), gpu, REPO_ROOT)]
    if gpu:
        return [plan_for_gpu(specs_dir, gpu, REPO_ROOT)]
    return plan_all(specs_dir, REPO_ROOT)


def _print_plan(plan: EnginePlan) -> None:
    table = Table(title=f"TensorRT-LLM engine plan: {plan.gpu.name}", show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    for key, value in plan.rows():
        table.add_row(key, value)
    for note in plan.notes:
        table.add_row("note", note)
    console.print(table)


_gpu_option = click.option("--gpu", help="GPU type (truss accelerator name): L4, A10G, A100, H100, H200, ...")
_spec_option = click.option("--spec", help="A spec file, or a spec name in engines/specs (e.g. smollm2-smoke).")
_specs_dir_option = click.option(
    "--specs-dir", type=click.Path(path_type=Path, file_okay=False), default=SPECS_DIR, show_default=True,
    help="Where the per-GPU specs live.",
)


@click.group()
def engines() -> None:
    """Plan and build TensorRT-LLM engines per GPU type (specs in engines/specs)."""


@engines.command()
@_gpu_option
@_spec_option
@_specs_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan(s) as JSON.")
def plan(gpu, spec, specs_dir, as_json) -> None:
    """Resolve, validate (truss trt_llm validation + our checks) and print the build plan(s)."""
    with _clean_errors():
        plans = resolve_plans(gpu, spec, specs_dir)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in plans], indent=2))
        return
    for p in plans:
        _print_plan(p)
    console.print(f"[green]{len(plans)} plan(s) valid[/green]: {', '.join(p.gpu.name for p in plans)}")


@contextlib.contextmanager
def _rich_step(label: str):
    started = time.monotonic()
    with console.status(f"[bold]{label}[/bold] ..."):
        try:
            yield
        except Exception:
            console.print(f"[red]x[/red] {label} ({time.monotonic() - started:.1f}s)")
            raise
    console.print(f"[green]ok[/green] {label} ({time.monotonic() - started:.1f}s)")


@engines.command()
@click.option("--gpu", required=True, help="GPU type to build for; must be the GPU of this machine.")
@_spec_option
@_specs_dir_option
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory for the engine + engine_manifest.json (must be new or empty).")
@click.option("--smoke/--no-smoke", default=True, show_default=True,
              help="Generate a few tokens with the fresh engine and record them in the manifest.")
def build(gpu, spec, specs_dir, out, smoke) -> None:
    """Build the engine for --gpu with TensorRT-LLM's LLM API and write its manifest."""
    with _clean_errors():
        (p,) = resolve_plans(gpu, spec, specs_dir)
        _print_plan(p)
        from compound_models.engines.build import build_engine

        manifest = build_engine(p, out, smoke=smoke, step=_rich_step)
    console.print(f"[green]engine built[/green] in {out}: {len(manifest.files)} files, "
                  f"TensorRT-LLM {manifest.tensorrt_llm_version}, spec {manifest.spec_hash[:16]}")
    if manifest.smoke:
        console.print(f"smoke: {manifest.smoke['prompt']!r} -> {manifest.smoke['text']!r}")


@engines.command()
@click.argument("engine_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--fake-gpu", metavar="NAME,CC[,COUNT]",
              help="Check against this GPU identity instead of detecting one (e.g. 'NVIDIA A10G,8.6').")
@click.option("--tensorrt-llm-version", help="Check against this TensorRT-LLM version instead of the installed one.")
@click.option("--no-checksums", is_flag=True, help="Skip re-hashing the engine files.")
def verify(engine_dir, fake_gpu, tensorrt_llm_version, no_checksums) -> None:
    """Check an engine's manifest against the GPU (and TensorRT-LLM) of this machine."""
    from compound_models.engines.manifest import verify_engine_for_this_gpu

    identity = None
    if fake_gpu:
        parts = [part.strip() for part in fake_gpu.split(",")]
        if len(parts) not in (2, 3):
            raise click.BadParameter("expected NAME,CC[,COUNT]", param_hint="--fake-gpu")
        identity = GpuIdentity(parts[0], parts[1], int(parts[2]) if len(parts) == 3 else 1)
    with _clean_errors():
        manifest = verify_engine_for_this_gpu(engine_dir, identity, tensorrt_llm_version, not no_checksums)
    console.print(f"[green]ok[/green]: {engine_dir} is a {manifest.gpu.type} engine "
                  f"(TensorRT-LLM {manifest.tensorrt_llm_version}) and fits this machine")


@engines.command()
@click.argument("engine_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--prompt", help="Defaults to the spec's smoke prompt.")
@click.option("--max-tokens", type=int)
def smoke(engine_dir, prompt, max_tokens) -> None:
    """Load a built engine from disk (after the GPU check) and generate a few tokens."""
    with _clean_errors():
        from compound_models.engines.build import smoke_engine

        text = smoke_engine(engine_dir, prompt, max_tokens)
    console.print(f"[green]smoke ok[/green]: {text!r}")


def render_variants(specs_dir: Path) -> dict[Path, str]:
    """Variant dir (relative to models/llm/trt_llm) -> config.yaml text, one per GPU spec."""
    rendered = {}
    for p in plan_all(specs_dir, REPO_ROOT):
        if not p.spec.model.repo:
            continue  # Baseten's engine builder cannot fetch a local checkpoint
        name = variant_dir_name(p.gpu)
        variant_path = f"models/llm/{VARIANTS_SUBDIR}/{name}"
        rendered[Path(name)] = render_variant_yaml(p.truss_config, p.spec_ref, variant_path)
    return rendered


@engines.command()
@_specs_dir_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=VARIANTS_DIR, show_default=True,
              help="Where the per-GPU engine-builder Truss dirs go.")
@click.option("--check", is_flag=True, help="Write nothing; fail if the committed variants are stale.")
def generate(specs_dir, out, check) -> None:
    """Generate the Baseten engine-builder Truss variants (<out>/<gpu>/config.yaml) from the specs."""
    with _clean_errors():
        rendered = render_variants(specs_dir)
    stale = []
    for relative, text in rendered.items():
        target = out / relative / "config.yaml"
        current = target.read_text() if target.is_file() else None
        if current == text:
            continue
        stale.append(str(target))
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    expected = {str(relative) for relative in rendered}
    extra = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name not in expected) if out.is_dir() else []
    if check:
        if stale or extra:
            raise click.ClickException(
                "engine-builder variants are stale: " + ", ".join(stale + [f"{out / e} (no spec)" for e in extra])
                + ". Run `compound engines generate`."
            )
        console.print(f"[green]variants up to date[/green]: {', '.join(sorted(expected))}")
        return
    for name in extra:
        console.print(f"[yellow]warning[/yellow]: {out / name} has no spec; delete it if the GPU was dropped")
    console.print(f"wrote {len(stale)} of {len(rendered)} variant(s) under {out}")
