#!/usr/bin/env bash
# Set up everything farm needs on this machine; safe to run again (it skips what is done).
#  - openssh-server (the stand-in boards are real sshd processes) and postgresql (queue and history
#    tests), installed with apt when root
#  - .venv with farm and its test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."

# apt packages farm's stand-ins and tests use: name, and a file that says it is there.
apt_install() {
  local package=$1 present=$2 why=$3
  compgen -G "$present" >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: $package is missing ($why); run as root once, or: sudo apt-get install $package" >&2
    return 1
  fi
  echo "setup: installing $package ($why)"
  apt-get -o DPkg::Lock::Timeout=120 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq "$package" >/dev/null
}
apt_install openssh-server /usr/sbin/sshd "stand-in boards are real sshd servers"
apt_install postgresql '/usr/lib/postgresql/*/bin/initdb' "the queue and shared-history tests start a real server" \
  || echo "setup: the PostgreSQL tests will be skipped" >&2
if [ "${1:-}" = "--tests" ]; then  # only the tests drive a browser
  { apt_install chromium /usr/bin/chromium "the dashboard tests drive a headless browser" &&
    apt_install chromium-driver /usr/bin/chromedriver "Selenium's driver for it"; } \
    || echo "setup: the dashboard's browser tests will be skipped" >&2
  # pdudaemon (the power tests' PDU daemon) needs systemd-python, which builds against libsystemd.
  { apt_install pkg-config /usr/bin/pkg-config "systemd-python's build finds libsystemd with it" &&
    apt_install libsystemd-dev /usr/include/systemd/sd-journal.h "pdudaemon's systemd-python builds against it"; } \
    || echo "setup: pdudaemon may not install; the power tests will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# The tests also run Qualcomm's HTP backend in simulation (the qcs-sim stand-in): the `qnn` extra, 98 MB.
extras=test
if [ "${1:-}" = "--tests" ]; then extras=test,qnn; fi
stamp=.venv/.farm-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
have=$(cat "$stamp" 2>/dev/null || true)
# what the tests installed (test,qnn) serves the demo (test) too
if [ "$have" != "$want" ] && [ "$have" != "${want%% *} test,qnn" ]; then
  echo "setup: installing farm and its dependencies ($extras) into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi
