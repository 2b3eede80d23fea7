"""The quick tier (`./scripts/test.sh --quick`): what starts real parts is marked `real`, and nothing else may."""

from __future__ import annotations

import subprocess

import pytest


def test_a_quick_test_that_starts_a_process_is_told_to_mark_itself_real(request):
    assert request.node.get_closest_marker("real") is None
    with pytest.raises(AssertionError, match=r"starts a process \(\['true'\]\): mark it @pytest.mark.real"):
        subprocess.run(["true"])


def test_a_test_that_needs_a_real_fixture_is_marked_real_and_may_start_processes(request, shared_dir):
    assert request.node.get_closest_marker("real") is not None
    assert subprocess.run(["true"]).returncode == 0


@pytest.mark.real
def test_a_test_marked_real_may_start_processes():
    assert subprocess.run(["true"]).returncode == 0
