"""Strict YAML for every file a user writes (inventories, checklists, model specs).

Mappings remember the line of each key, so an error can name `file:line`;
a duplicate key is an error, not a silent overwrite. Aliases are allowed (Ansible
inventories use `<<: *defaults`), but what they expand to is bounded: a
"billion laughs" file inside a value is refused at once instead of filling memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml


class LineMap(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


MAX_EXPANDED_NODES = 100_000  # far above any lab's inventory, far below an alias bomb


class AliasBomb(yaml.YAMLError):
    def __init__(self, mark):
        super().__init__()
        self.problem_mark = mark


if yaml.__with_libyaml__:
    class _Parser(yaml.composer.Composer, yaml.cyaml.CParser, yaml.constructor.SafeConstructor,
                  yaml.resolver.Resolver):
        """libyaml's scanner and parser under PyYAML's own composer (which counts aliases, below): six times
        faster than the pure-Python SafeLoader on a large inventory (benchmarks/inventory_size.py)."""

        def __init__(self, stream):
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
else:  # a PyYAML built without libyaml
    _Parser = yaml.SafeLoader  # type: ignore[misc]  # the same role, one branch or the other


class _LineLoader(_Parser):
    """Counts what aliases expand to while composing, before anything is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def _size(self, node) -> int:
        found = self._sizes.get(id(node))
        if found is None:
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            found = 1 + sum(self._size(child) for child in children)
            self._sizes[id(node)] = found
        return found

    def compose_node(self, parent, index):
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            self._expanded += self._size(node)
            if self._expanded > MAX_EXPANDED_NODES:
                raise AliasBomb(event.start_mark)
        return node


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMap:
    explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # merged pairs (`<<: *defaults`) first: a key written here overrides them
    merged = len(node.value) - explicit
    mapping = LineMap()
    mapping.line = node.start_mark.line + 1
    written: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if index >= merged:
            if key in written:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            written.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# (path, line, message) -> the caller's own error type
ErrorFactory = Callable[[str, "int | None", str], Exception]


def load_yaml(path: Path, error: ErrorFactory, what: str = "file", max_bytes: int | None = None) -> Any:
    """Parse a YAML file with line-aware mappings; `error(path, line, message)` for every problem.

    `max_bytes`: a larger file is refused before it is read (parsing takes seconds per MB)."""
    path = Path(path)
    if not path.is_file():
        raise error(str(path), None, f"{what} not found")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise error(str(path), None, f"{what} is {size / 1e6:.1f} MB, over farm's {max_bytes / 1e6:.0f} MB limit: "
                    "split the lab into several inventories (one per controller or pool)")
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader)
    except AliasBomb as exc:
        raise error(str(path), exc.problem_mark.line + 1, f"YAML aliases here expand to more than "
                    f"{MAX_EXPANDED_NODES} values (an alias bomb?): write the values out") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise error(str(path), mark.line + 1 if mark else None, f"YAML syntax: {exc.problem or exc.context}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(str(path), None, f"not readable as YAML: {exc}") from exc
