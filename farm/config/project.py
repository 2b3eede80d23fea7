"""A team's project configuration: `[tool.farm]` in pyproject.toml, or farm.toml.

Found the way pytest finds its configuration: from the current folder upwards,
the first farm.toml, or pyproject.toml with a `[tool.farm]` table
(`FARM_CONFIG` names one explicitly). Paths in it are relative to its folder.
Every key is checked: an unknown key or a wrong type is an error naming the
file, the line and the key, like the inventory's.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.errors import LocatedError
from farm.util import did_you_mean

TABLE = "tool.farm"
RELEASE_POLICY = "release_policy"  # {path = "release.yaml", sha256 = "..."}: the checklist a release is signed under
RELEASE_POLICY_HELP = ("the release policy, pinned: {path = CHECKLIST.yaml, sha256 = the checklist's sha256 as "
                       "`farm signoff sign --dry-run` prints it}")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ProjectConfigError(LocatedError):
    pass


@dataclass
class ProjectConfig:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def where(self, key: str) -> str:
        return f"{self.path}:{self.lines.get(key, 1)}"


def _key_lines(text: str, in_pyproject: bool) -> dict[str, int]:
    """The line of each top-level key of the farm table (tomllib keeps no positions)."""
    lines: dict[str, int] = {}
    inside = not in_pyproject
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = (stripped.replace(" ", "") == f"[{TABLE}]") if in_pyproject else False
            continue
        match = re.match(r"([A-Za-z0-9_-]+)\s*=", stripped)
        if inside and match:
            lines.setdefault(match.group(1), number)
    return lines


def load_project_config(path: Path) -> ProjectConfig | None:
    """The farm table of one file; None when a pyproject.toml has none."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = tomllib.loads(text)
    except OSError as exc:
        raise ProjectConfigError(str(path), None, f"cannot read the file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise ProjectConfigError(str(path), int(found.group(1)) if found else None, f"TOML syntax: {exc}") from exc
    in_pyproject = path.name == "pyproject.toml"
    table = doc.get("tool", {}).get("farm") if in_pyproject else doc
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProjectConfigError(str(path), None, f"[{TABLE}] must be a table")
    return ProjectConfig(path, table, _key_lines(text, in_pyproject))


def find_project_config(start: Path | None = None) -> ProjectConfig | None:
    """FARM_CONFIG, else the nearest farm.toml or pyproject.toml with [tool.farm] from `start` upwards."""
    if os.environ.get("FARM_CONFIG"):
        path = Path(os.environ["FARM_CONFIG"])
        if not path.is_file():
            raise ProjectConfigError(str(path), None, "FARM_CONFIG names a file that does not exist")
        return load_project_config(path)
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        for name in ("farm.toml", "pyproject.toml"):
            path = candidate / name
            if path.is_file():
                found = load_project_config(path)
                if found is not None:
                    return found
    return None


def check_keys(config: ProjectConfig, known: dict[str, str]) -> None:
    """Unknown keys are errors (with the nearest known key), never ignored. `known`: key -> description."""
    for key in config.values:
        if key not in known:
            raise ProjectConfigError(str(config.path), config.lines.get(key), "unknown key", field=key,
                                     hint=did_you_mean(key, known, "keys: "))


def release_policy(config: ProjectConfig | None):
    """The pinned release policy (a Checklist), or None when the project pins none.

    Pinned by the sha256 of what the checklist means (items and policy, `Checklist.sha256`):
    a file that no longer means what was pinned is an error, never a quietly different policy.
    """
    from farm.config.checklist import load_checklist  # PyYAML: not loaded by every `farm` start, only for a policy

    if config is None or RELEASE_POLICY not in config.values:
        return None
    value, line = config.values[RELEASE_POLICY], config.lines.get(RELEASE_POLICY)
    fail = lambda message, key: ProjectConfigError(str(config.path), line, message,  # noqa: E731
                                                   field=f"{RELEASE_POLICY}.{key}" if key else RELEASE_POLICY)
    if not isinstance(value, dict) or set(value) != {"path", "sha256"}:
        raise fail(f"expected {{path = \"CHECKLIST.yaml\", sha256 = \"...\"}}, got {value!r}", None)
    if not isinstance(value["path"], str) or not value["path"]:
        raise fail(f"expected a checklist file, got {value['path']!r}", "path")
    if not isinstance(value["sha256"], str) or not SHA256_RE.match(value["sha256"]):
        raise fail(f"expected 64 lowercase hex digits, got {value['sha256']!r}", "sha256")
    path = Path(os.path.expanduser(value["path"]))
    checklist = load_checklist(path if path.is_absolute() else config.folder / path)
    if checklist.sha256 != value["sha256"]:
        raise fail(f"{checklist.path} means sha256 {checklist.sha256}, not the one pinned: the policy changed since "
                   f"it was pinned; review the change, then pin sha256 = \"{checklist.sha256}\"", "sha256")
    return checklist
