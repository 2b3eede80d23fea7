"""farm as a team installs it: a wheel in a clean venv, `farm init`, `farm run`, in a folder of their own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import closed_port, farm, ssh_signer

REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict:
    """No PYTHONPATH, no FARM_* of this session, no virtualenv of the checkout."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("FARM_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    return {**keep, **extra}


@pytest.mark.real  # starts a process
def test_every_install_line_names_farm_s_own_distribution_not_the_pypi_project_called_farm(tmp_path):
    import tomllib
    from importlib.metadata import distribution

    name = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    # `pip download --no-deps farm-hil` finds nothing: free on PyPI; `farm` is an NLP framework
    assert name == "farm-hil"
    installed = distribution(name)
    assert "farm" in installed.read_text("top_level.txt").split()  # the import package keeps its name...
    assert [e.value for e in installed.entry_points if e.name == "farm" and e.group == "console_scripts"] == \
        ["farm.ui.cli:main"]  # ...and so does the command
    assert farm("init", cwd=tmp_path).returncode == 0
    ci = (tmp_path / "ci" / "farm-nightly.yml").read_text()
    installs = [line for line in ci.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all(line.rstrip().endswith("pip install farm-hil") for line in installs), installs
    docs = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    lines = re.findall(r"^(?:\$ )?pip install ('?farm[^\s']*'?)", docs, re.MULTILINE)  # the lines a user types
    assert lines and all(re.match(r"'?farm(-hil|_hil-\*\.whl)", target) for target in lines), lines



def test_the_wheel_lists_every_package_of_farm():
    """pyproject.toml names the packages one by one: a new folder left out is missing from every wheel
    (farm/build/toolchains once was, and an installed farm could not import its own job)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "farm").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)

@pytest.mark.slow
def test_a_wheel_in_a_clean_venv_runs_init_then_run_from_an_empty_folder(tmp_path, shared_dir):
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("farm_hil-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True,
                               text=True, timeout=900, env=clean_env())
    assert installed.returncode == 0, installed.stderr[-2000:]
    project = tmp_path / "team-project"
    project.mkdir()
    env = clean_env(FARM_LAB_DIR=str(shared_dir / "lab-wheel"))
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import farm, farm.resources as r; "
                            "print(farm.__file__); print(r.agent())"], cwd=project, capture_output=True, text=True,
                           env=env, timeout=60)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout  # not the checkout

    init = subprocess.run([str(venv / "bin" / "farm"), "init"], cwd=project, capture_output=True, text=True,
                          env=env, timeout=60)
    assert init.returncode == 0 and "wrote  pyproject.toml" in init.stdout, init.stderr
    run = subprocess.run([str(venv / "bin" / "farm"), "run", "--runs", "10"], cwd=project, capture_output=True,
                         text=True, env=env, timeout=600)
    (run_dir,) = [p for p in (project / "results").iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())
    failed = [c for b in results["boards"] for v in b["variants"].values() for c in v["checks"]
              if c["status"] in ("fail", "error")]
    assert run.returncode == (1 if failed else 0), run.stdout[-3000:] + run.stderr[-3000:]
    assert [b["name"] for b in results["boards"]] == ["a53-sim", "a72-sim"]  # the inventory farm init wrote
    assert all(b["status"] == "ok" for b in results["boards"])
    assert f"report: {run_dir / 'report.html'}" in run.stdout
    assert "farm-matrix" in (run_dir / "report.html").read_text()
    assert results["inventory"] == str(project / "inventory" / "lab.yaml")

    # A sign-off from the installed farm: the allowed_signers `farm init` wrote, with the team's signer added;
    # the packaged dms-demo checklist (it extends the packaged dms.yaml) lets the stand-ins count.
    ssh_signer(project, "ada", "ada@example.com")
    code = "import farm.resources as r; print(r.checklist('dms-demo'))"
    demo = subprocess.run([str(venv / "bin" / "python"), "-c", code],
                          cwd=project, capture_output=True, text=True, env=env, timeout=60).stdout.strip()
    signed = subprocess.run([str(venv / "bin" / "farm"), "signoff", "sign", run_dir.name, "--checklist", demo,
                             "--signing-key", "ada"], cwd=project, capture_output=True, text=True, env=env, timeout=120)
    assert signed.returncode == (1 if failed else 0), signed.stdout + signed.stderr
    if not failed:
        verified = subprocess.run([str(venv / "bin" / "farm"), "signoff", "verify", str(run_dir)], cwd=project,
                                  capture_output=True, text=True, env=env, timeout=120)
        assert verified.returncode == 0 and "verified: signed by ada@example.com" in verified.stdout, verified.stdout

    # The dashboard from the installed farm: its templates and plotly.js travel in the wheel.
    port = closed_port()
    server = subprocess.Popen([str(venv / "bin" / "farm"), "serve", "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=5) as page:
                    assert run_dir.name in page.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("the installed farm serve never answered")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/plotly.min.js", timeout=30) as script:
            assert len(script.read()) > 1_000_000
    finally:
        server.terminate()
        server.wait(timeout=10)


# The first release fixed past each CVE-class bug farm could reach (pyproject.toml says which).
FIXED_IN = {"onnx": "1.17", "paramiko": "3.4", "jinja2": "3.1.6", "starlette": "0.49.1", "pyyaml": "5.4"}


def test_no_dependency_floor_admits_a_release_with_a_known_cve_class_bug():
    import tomllib
    from importlib.metadata import version as installed

    from packaging.requirements import Requirement
    from packaging.version import Version

    floors = {}
    for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        floors[requirement.name.lower()] = min((Version(s.version) for s in requirement.specifier
                                                if s.operator == ">="), default=None)
    for name, fixed in FIXED_IN.items():
        assert floors[name] is not None and floors[name] >= Version(fixed), (name, floors[name], fixed)
        assert Version(installed(name)) >= Version(fixed)
