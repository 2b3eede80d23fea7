#!/usr/bin/env bash
# Set up everything farm needs on this machine; safe to run again (it skips what is done).
#  - openssh-server (the stand-in boards are real sshd processes), installed with apt when root
#  - .venv with farm and its test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing openssh-server (stand-in boards are real sshd servers)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
  else
    echo "setup: /usr/sbin/sshd is missing; run as root once, or: sudo apt-get install openssh-server" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.farm-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing farm and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
