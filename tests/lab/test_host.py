"""The stand-ins' board Python: built once per machine, and never used half-built."""

from __future__ import annotations

import os
import threading
import time

import pytest

from farm.lab import host


@pytest.mark.skipif(os.geteuid() != 0, reason="the shared board Python is built only as root")
def test_a_second_lab_up_waits_for_the_board_python_another_is_building_and_never_gets_it_half_built(
        tmp_path, monkeypatch):
    folder = tmp_path / "board-python"
    monkeypatch.setattr(host, "BOARD_PYTHON_DIR", folder)
    calls, seen = [], []

    def build(argv, what, cwd=None):  # venv makes bin/python at once; pip takes a while after it
        calls.append(argv[1:3])
        if "venv" in argv:
            (folder / "bin").mkdir(parents=True, exist_ok=True)
            (folder / "bin" / "python").write_text("")
        else:
            time.sleep(0.5)
        return ""
    monkeypatch.setattr(host, "run_checked", build)

    def lab_up():
        python = host.board_python()
        seen.append((python, (folder / ".farm-ready").exists()))  # usable: numpy and onnxruntime installed

    first = threading.Thread(target=lab_up)
    first.start()
    while not (folder / "bin" / "python").exists():  # the first is between venv and pip install
        time.sleep(0.01)
    lab_up()
    first.join()
    assert seen == [(str(folder / "bin" / "python"), True)] * 2
    assert calls == [["-m", "venv"], ["-m", "pip"]], "built once, by the first"
    host.board_python()
    assert len(calls) == 2, "a built one is used as it is"
