#!/usr/bin/env bash
# Set up, then run farm's own tests (locally the default run skips tests marked slow; CI runs all).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests || exit 1
if [ "${CI:-}" = "true" ]; then
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
