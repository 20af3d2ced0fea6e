"""The Space configuration: README's front matter and requirements.txt agree with each other, with the app,
and with what ZeroGPU accepts (Python 3.10.13 or 3.12.12, torch 2.8 to 2.11, per its documentation of 2026-08),
while this project's CPU machines (Python 3.11) keep the CPU build of torch 2.13.0."""

from pathlib import Path

import gradio
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    block = text.split("---\n")[1]
    return {k.strip(): v.strip().strip('"') for k, _, v in (line.partition(":") for line in block.splitlines())}


def requirements_for(python: str) -> dict[str, Requirement]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"python_version": python}):
                out[req.name] = req
    return out


def pinned(req: Requirement) -> Version:
    (spec,) = req.specifier
    assert spec.operator == "=="
    return Version(spec.version)


def test_the_space_runs_the_app_on_zero_gpu_or_cpu_basic():
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (ROOT / "app.py").is_file()
    assert meta["suggested_hardware"] == "zero-a10g"
    assert meta["python_version"] in ("3.10", "3.12")  # the versions ZeroGPU documents
    space = requirements_for(meta["python_version"])
    assert Version("2.8") <= pinned(space["torch"]) < Version("2.12")
    assert pinned(space["gradio"]) == Version(meta["sdk_version"]) == Version(gradio.__version__)
    assert "spaces" in space


def test_this_projects_machines_keep_the_cpu_torch_pin():
    assert pinned(requirements_for("3.11")["torch"]) == Version("2.13.0")
