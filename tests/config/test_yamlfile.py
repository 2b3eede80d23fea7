"""Strict YAML for the files users write: each key's line, duplicates refused, alias bombs stopped."""

from __future__ import annotations

import pytest

from farm.config.yamlfile import MAX_EXPANDED_NODES, LineMap, load_yaml
from farm.errors import LocatedError


def load(tmp_path, text: str):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return load_yaml(path, lambda p, line, message: LocatedError(p, line, message))


def error(tmp_path, text: str) -> LocatedError:
    with pytest.raises(LocatedError) as caught:
        load(tmp_path, text)
    return caught.value


def test_each_mapping_and_key_has_its_line(tmp_path):
    doc = load(tmp_path, "# a comment\nname: x\nboards:\n  - name: b1\n    port: 22\n")
    assert isinstance(doc, LineMap) and (doc.line, doc.line_of("name"), doc.line_of("boards")) == (2, 2, 3)
    board = doc["boards"][0]
    assert isinstance(board, LineMap) and board.line_of("port") == 5
    assert board.line_of("missing") == board.line == 4  # a key not there: the mapping's own line


def test_a_mapping_made_in_code_has_no_lines_but_answers():
    made = LineMap({"a": 1})
    assert made.line_of("a") == 0 and made == {"a": 1}


@pytest.mark.parametrize(("text", "line", "words"), [
    ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a'"),
    ("a: [1, 2\nb: 3\n", 2, "YAML syntax"),
    ("a: 1\n  b: 2\n", 2, "YAML syntax"),
    ("a: *missing\n", 1, "YAML syntax"),
])
def test_a_mistake_names_its_line(tmp_path, text, line, words):
    found = error(tmp_path, text)
    assert found.line == line and words in str(found)


def test_a_missing_file_is_named_as_what_it_was_meant_to_be(tmp_path):
    with pytest.raises(LocatedError, match="inventory file not found"):
        load_yaml(tmp_path / "nope.yaml", lambda p, line, message: LocatedError(p, line, message), "inventory file")


def test_a_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_bytes(b"\xff\xfe\x00a: \x80\x81")
    with pytest.raises(LocatedError, match="not readable as YAML|YAML syntax"):
        load_yaml(path, lambda p, line, message: LocatedError(p, line, message))


def test_aliases_are_allowed_as_ansible_uses_them(tmp_path):
    doc = load(tmp_path, "defaults: &d {user: pi, port: 22}\nboard:\n  <<: *d\n  port: 2222\n")
    assert doc["board"] == {"user": "pi", "port": 2222}


def test_an_alias_bomb_is_stopped_before_it_fills_memory(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    found = error(tmp_path, "\n".join(levels) + "\n")
    assert f"more than {MAX_EXPANDED_NODES} values" in str(found) and found.line is not None


def test_a_key_written_twice_beside_a_merge_is_still_a_duplicate(tmp_path):
    found = error(tmp_path, "defaults: &d {user: pi}\nboard:\n  <<: *d\n  port: 1\n  port: 2\n")
    assert found.line == 5 and "duplicate key 'port'" in str(found)
