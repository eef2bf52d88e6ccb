"""`compound check`: catch packaging mistakes before a push.

For each Truss: load its config with truss's own loader/validation, gather it the way
`truss push` does (external packages bundled) and build its image build context (what
`truss image build-context` writes), then check the model class is importable from it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import click
from rich.console import Console

from compound.runtime.truss_fs import prepare_build_dir
from compound.services import SERVICES, TRUSS_NAMES

console = Console(soft_wrap=True)


class TrussCheckError(Exception):
    pass


def check_truss(truss_dir: Path, build_dir: Path) -> list[str]:
    """Returns notes about what was checked; raises TrussCheckError naming the problem."""
    from truss.base.truss_config import TrussConfig

    config_path = truss_dir / "config.yaml"
    if not config_path.is_file():
        raise TrussCheckError(f"{config_path} does not exist")
    try:
        config = TrussConfig.from_yaml(config_path)
    except Exception as exc:  # truss raises several types; all mean "invalid config"
        raise TrussCheckError(f"{config_path}: invalid Truss config: {exc}") from exc
    notes = [f"config valid (model_name={config.model_name!r})"]
    model_file = truss_dir / config.model_module_dir / config.model_class_filename
    if config.trt_llm is None and not model_file.is_file():
        raise TrussCheckError(f"{model_file} is missing (config model_class_filename)")
    for package_dir in config.external_package_dirs:
        if not (truss_dir / package_dir).is_dir():
            raise TrussCheckError(f"external_package_dirs entry {package_dir!r} is not a directory")
    try:
        prepare_build_dir(truss_dir, build_dir)
    except Exception as exc:
        raise TrussCheckError(f"building the image build context failed: {exc}") from exc
    if not (build_dir / "Dockerfile").is_file():
        raise TrussCheckError("image build context has no Dockerfile")
    notes.append("image build context built")
    if config.trt_llm is None:
        _check_model_compiles(build_dir / "model" / config.model_class_filename)
        notes.append("model code compiles")
    return notes


def _check_model_compiles(model_file: Path) -> None:
    source = model_file.read_text()
    try:
        compile(source, str(model_file), "exec")
    except SyntaxError as exc:
        raise TrussCheckError(f"{model_file.name}:{exc.lineno}: syntax error: {exc.msg}") from exc
    if "class Model" not in source:
        raise TrussCheckError(f"{model_file.name} defines no `class Model`")


def _resolve_dirs(names) -> list[tuple[str, Path]]:
    result = []
    for name in names or TRUSS_NAMES:
        if name in SERVICES and SERVICES[name].truss_dir is not None:
            result.append((name, SERVICES[name].truss_dir))
        elif Path(name).is_dir():
            result.append((Path(name).name, Path(name).resolve()))
        else:
            raise click.UsageError(
                f"unknown Truss {name!r}; valid: {', '.join(TRUSS_NAMES)} or a Truss directory"
            )
    return result


@click.command()
@click.argument("names", nargs=-1)
def check(names):
    """Validate NAMES (default: every Truss; a Truss directory path also works)."""
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, truss_dir in _resolve_dirs(names):
            try:
                notes = check_truss(truss_dir, Path(tmp) / name)
                console.print(f"[green]ok[/]   {name}: " + "; ".join(notes))
            except TrussCheckError as exc:
                failures += 1
                console.print(f"[red]FAIL[/] {name}: {exc}")
    if failures:
        raise SystemExit(1)
