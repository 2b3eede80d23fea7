#!/usr/bin/env bash
# Set up, then run the main job: the demo model on the built-in stand-in boards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/farm run "$@"
