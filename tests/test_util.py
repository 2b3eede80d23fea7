"""The small helpers every layer uses: names that become paths, deletions confined to what farm made, atomic JSON."""

from __future__ import annotations

import json
import re

import pytest

from farm.util import (
    NAME_RE,
    did_you_mean,
    file_sha256,
    is_number,
    new_run_id,
    remove_tree,
    split_list,
    write_json_atomic,
)


@pytest.mark.parametrize("name", ["rpi4-01", "a", "A.b_c-d", "0", "x" * 64, "20260101T000000Z-ab12"])
def test_a_name_of_letters_digits_dot_dash_underscore_is_a_name(name):
    assert NAME_RE.match(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-rf", "_x", "a/b", "a b", "x" * 65, "a\nb", "é"])
def test_a_name_that_could_be_a_path_an_option_or_hidden_is_not(name):
    assert not NAME_RE.match(name)


def test_run_ids_sort_by_time_and_differ():
    ids = {new_run_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}", i) and NAME_RE.match(i) for i in ids)


def test_a_json_document_is_written_whole_with_no_temporary_left(tmp_path):
    path = tmp_path / "deep" / "results.json"
    write_json_atomic(path, {"a": [1, 2]})
    write_json_atomic(path, {"b": 3})
    assert json.loads(path.read_text()) == {"b": 3}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_a_files_sha256_is_that_of_its_bytes(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_folder_farm_made_directly_inside_is_removed(tmp_path):
    (tmp_path / "t1" / "sub").mkdir(parents=True)
    remove_tree(tmp_path / "t1", tmp_path)
    remove_tree(tmp_path / "t1", tmp_path)  # already gone: nothing to do
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("relative", ["..", ".", "a/b", ".hidden", "link"])
def test_anything_else_is_refused_and_left(tmp_path, relative):
    inside = tmp_path / "lab"
    (inside / "a" / "b").mkdir(parents=True)
    (inside / ".hidden").mkdir()
    (tmp_path / "outside").mkdir()
    (inside / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(ValueError, match="refusing to delete"):
        remove_tree(inside / relative, inside)
    assert (inside / "a" / "b").is_dir() and (tmp_path / "outside").is_dir() and (inside / ".hidden").is_dir()


@pytest.mark.parametrize(("word", "choices", "hint"), [("runz", ["runs", "warmup"], "did you mean 'runs'?"),
                                                       ("zzz", ["runs", "warmup"], "keys: runs, warmup"),
                                                       (3, [1, 2, 3], "did you mean '3'?")])
def test_a_misspelt_name_gets_the_nearest_choice_else_every_choice(word, choices, hint):
    assert did_you_mean(word, choices, "keys: ") == hint


@pytest.mark.parametrize(("value", "whole", "ok"), [(1, False, True), (1.5, False, True), (1, True, True),
                                                    (1.5, True, False), (True, False, False), (False, True, False),
                                                    ("1", False, False), (None, False, False)])
def test_a_number_from_a_file_is_never_a_bool_and_whole_when_asked(value, whole, ok):
    assert is_number(value, whole=whole) is ok


@pytest.mark.parametrize(("text", "names"), [("a,b", ["a", "b"]), (" a , b ,, c ", ["a", "b", "c"]), ("", []),
                                             (",", []), ("fp32", ["fp32"])])
def test_a_comma_list_is_its_names_without_blanks(text, names):
    assert split_list(text) == names
