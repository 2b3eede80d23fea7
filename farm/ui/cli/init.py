"""`farm init`: scaffold a project that uses farm, in the current folder. It never overwrites a file."""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

from farm.config.project import load_project_config

# template -> where it goes in the project
FILES = (("lab.yaml.tmpl", "inventory/lab.yaml"), ("test_my_board.py.tmpl", "suites/test_my_board.py"),
         ("model.farm.yaml.tmpl", "models/my_model.farm.yaml"), ("farm-nightly.yml.tmpl", "ci/farm-nightly.yml"),
         ("allowed_signers.tmpl", "allowed_signers"))


def _template(name: str) -> str:
    return files("farm").joinpath("templates", name).read_text()


def _config(folder: Path, farm_toml: bool) -> tuple[Path, str | None]:
    """Where the project configuration goes, and its text (None: one exists already)."""
    table = _template("farm.toml.tmpl")
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and load_project_config(pyproject) is not None:
        return pyproject, None
    if farm_toml or pyproject.is_file():  # an existing pyproject.toml is the team's file: never rewritten
        return folder / "farm.toml", table
    return pyproject, "[tool.farm]\n" + table


def write_new(path: Path, text: str | None) -> str:
    if text is None or path.exists():
        return f"kept   {path} (exists)"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return f"wrote  {path}"


def cmd_init(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    config, text = _config(folder, args.farm_toml)
    print(write_new(config, text))
    for template, target in FILES:
        print(write_new(folder / target, _template(template)))
    print("next: `farm run` (the stand-ins in inventory/lab.yaml), then list your boards and set model and data "
          f"in {config.name}; `farm config` shows the effective settings")
    return 0


def register(sub) -> None:
    init = sub.add_parser("init", help="scaffold a farm project here: configuration, inventory, a suite, a CI job")
    init.add_argument("folder", nargs="?", default=".", help="the project folder (default: here)")
    init.add_argument("--farm-toml", action="store_true",
                      help="write farm.toml even where no pyproject.toml exists (default: a [tool.farm] table)")
    init.set_defaults(func=cmd_init)
