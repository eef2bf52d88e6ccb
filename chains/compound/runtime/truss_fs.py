"""Build the file system a Truss's image would have, on the host, without Docker.

Exactly what truss's own test-suite does (tests/conftest.py::_build_truss_fs):
ServingImageBuilderContext prepares the image build dir (Dockerfile, server code,
bundled packages, model code), DockerBuildEmulator replays its COPY/ENV/WORKDIR.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from truss.contexts.image_builder.serving_image_builder import ServingImageBuilderContext
from truss.contexts.local_loader.docker_build_emulator import DockerBuildEmulator
from truss.truss_handle.truss_handle import TrussHandle


@dataclass
class TrussFs:
    root: Path  # emulated "/" of the image
    app_dir: Path  # where the server runs from (Dockerfile WORKDIR)
    env: dict  # ENV lines of the Dockerfile


def prepare_build_dir(truss_dir: Path, build_dir: Path) -> Path:
    """What `truss image build-context` writes: Dockerfile + everything it COPYs."""
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    # `truss push` first gathers the Truss (external_package_dirs copied into its
    # bundled packages dir, remote.py) and builds from that; do the same.
    gathered = TrussHandle(truss_dir).gather()
    ServingImageBuilderContext.run(gathered).prepare_image_build_dir(build_dir)
    return build_dir


def build_truss_fs(truss_dir: Path, work_dir: Path) -> TrussFs:
    build_dir = prepare_build_dir(truss_dir, work_dir / "build")
    root = work_dir / "fs"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    result = DockerBuildEmulator(build_dir / "Dockerfile", build_dir).run(root)
    app_dir = root / str(result.workdir).lstrip("/")
    return TrussFs(root=root, app_dir=app_dir, env=dict(result.env))
