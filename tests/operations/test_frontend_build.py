"""The frontend's build is committed (app/static/) so that installs need no Node; these
tests prove it is the build of the committed sources (frontend/).

The build writes into its manifest a digest of its sources: every file of frontend/
outside node_modules/, sorted by path, each hashed as "<path>\\n<sha256 of its bytes>\\n"
(frontend/vite.config.ts computes it the same way). A source changed without a rebuild
changes the digest. And the build is reproducible: rebuilding from the same sources, when
npm is at hand, gives the committed bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from app.frontend import MANIFEST_NAME, STATIC_DIRECTORY, page_assets

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
REBUILD = "npm --prefix frontend ci && npm --prefix frontend run build"


def sources_digest(frontend: Path) -> str:
    digest = hashlib.sha256()
    paths = sorted(
        path.relative_to(frontend).as_posix()
        for path in frontend.rglob("*")
        if path.is_file() and "node_modules" not in path.relative_to(frontend).parts
    )
    for path in paths:
        content = hashlib.sha256((frontend / path).read_bytes()).hexdigest()
        digest.update(f"{path}\n{content}\n".encode())
    return digest.hexdigest()


def built_files(directory: Path) -> dict[str, str]:
    """Each file of a build by its path, with the SHA-256 of its bytes."""
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in directory.rglob("*")
        if path.is_file()
    }


def test_the_committed_build_is_the_build_of_the_committed_sources() -> None:
    manifest = json.loads((STATIC_DIRECTORY / MANIFEST_NAME).read_text())
    assert manifest["sources_digest"] == sources_digest(FRONTEND), (
        f"frontend/ changed since app/static/ was built: rebuild with `{REBUILD}`"
    )


def test_the_graphiql_page_names_files_the_build_holds() -> None:
    assets = page_assets("graphiql")
    for path in (assets.script, *assets.styles):
        assert path.startswith("assets/graphiql-")
        assert (STATIC_DIRECTORY / path).is_file()
    assert len(assets.styles) == 1


def test_rebuilding_the_frontend_gives_the_committed_bytes(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the committed build cannot be rebuilt here")
    if not (FRONTEND / "node_modules").is_dir():
        installed = subprocess.run(
            [npm, "--prefix", str(FRONTEND), "ci", "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            check=False,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm ci failed (no registry at hand?): {installed.stderr[-500:]}")
    output = tmp_path / "static"
    built = subprocess.run(
        [npm, "--prefix", str(FRONTEND), "run", "build", "--", "--outDir", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert built_files(output) == built_files(STATIC_DIRECTORY)
