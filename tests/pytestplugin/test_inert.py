"""farm's pytest plugin in an environment where farm is installed but a project does not use it."""

from __future__ import annotations


def test_a_foreign_board_fixture_is_left_alone(pytester, monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("FARM_")]:
        monkeypatch.delenv(name)
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def board():
            return "the team's own board object"
        """)
    pytester.makepyfile(test_theirs="""
        def test_x(board):
            assert board == "the team's own board object"

        def test_y():
            pass
        """)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    collected = [line for line in result.outlines if "::test_" in line]
    assert [line.split()[0] for line in collected] == ["test_theirs.py::test_x", "test_theirs.py::test_y"]
    assert "farm" in "\n".join(result.outlines[:5])  # the plugin is loaded, and leaves the session alone
