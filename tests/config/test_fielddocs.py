"""The docs' list of inventory fields is written from the fields' declarations, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from farm.config.fielddocs import BEGIN, END, fields_markdown, marked_files, written
from farm.config.inventory import BOARD_KEYS, POWER_KEYS, STANDIN_KEYS

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_list_of_board_fields_is_the_one_their_declarations_write():
    (page,) = marked_files(REPO)  # README.md or the docs/ page it moved to: exactly one holds the list
    assert written(page) == fields_markdown(), (
        f"{page.relative_to(REPO)}: the list between {BEGIN} and {END} is stale: "
        "run `python -m farm.config.fielddocs --write`")


def test_the_list_names_every_key_a_board_a_stand_in_and_power_take():
    listed = {line.split("`")[1] for line in fields_markdown().splitlines()[2:]}
    assert listed == set(BOARD_KEYS) | set(STANDIN_KEYS) | {f"power.{k}" for k in POWER_KEYS}
    assert {"class", "power.on_command", "arch", "cpu"} <= listed and "board_class" not in listed
