#!/usr/bin/env bash
# Set up, then run farm's own tests (locally the default run skips tests marked slow; CI runs all).
#   --quick: only the tests that start no real part (no stand-in, database, browser or process):
#            about a minute, for the edit-test loop; the full run stays the CI run.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests || exit 1
if [ "${1:-}" = "--quick" ]; then
  shift
  .venv/bin/python -m pytest -m "not slow and not real" "$@"
elif [ "${CI:-}" = "true" ]; then
  # CI has 90 minutes: it runs the slow tests too (emulated Arm boards, about a minute more),
  # but not the optional full-system VM board (./scripts/test.sh -m fullsystem runs it).
  .venv/bin/python -m pytest -m "not fullsystem" "$@"
else
  .venv/bin/python -m pytest "$@"
fi
status=$?
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
