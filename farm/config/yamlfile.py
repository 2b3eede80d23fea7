"""Strict YAML for every file a user writes (inventories, checklists, model specs).

Mappings remember the line of each key, so an error can name `file:line`;
a duplicate key is an error, not a silent overwrite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml


class LineMap(dict):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 0
    lines: dict

    def line_of(self, key: str) -> int:
        return getattr(self, "lines", {}).get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMap:
    loader.flatten_mapping(node)
    mapping = LineMap()
    mapping.line, mapping.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# (path, line, message) -> the caller's own error type
ErrorFactory = Callable[[str, "int | None", str], Exception]


def load_yaml(path: Path, error: ErrorFactory, what: str = "file") -> Any:
    """Parse a YAML file with line-aware mappings; `error(path, line, message)` for every problem."""
    path = Path(path)
    if not path.is_file():
        raise error(str(path), None, f"{what} not found")
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise error(str(path), mark.line + 1 if mark else None, f"YAML syntax: {exc.problem or exc.context}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(str(path), None, f"not readable as YAML: {exc}") from exc
