#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for drfleet: the package, and a running Docker engine.
#   scripts/setup.sh          what `drfleet` needs to run here
#   scripts/setup.sh --test   also what the test suite needs (debootstrap for the test bed)
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

packages=(docker.io openssh-client iproute2)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip python3-venv)
[ "${1:-}" = "--test" ] && packages+=(debootstrap busybox-static chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

extra=""; [ "${1:-}" = "--test" ] && extra="[test]"
if [ -z "${VIRTUAL_ENV:-}" ] && python3 -c 'import sys,sysconfig,os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
  echo "setup: this python3 is managed by the system; make a virtual environment first:" >&2
  echo "  python3 -m venv .venv && . .venv/bin/activate, then run this again" >&2
  exit 1
fi
python3 -m pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 \
  | grep -v "^WARNING: Running pip as\|is ignored: it is neither" || true

if ! $SUDO docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl start docker
  else  # containers and CI machines without systemd
    echo "setup: starting dockerd (log: /var/log/dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do $SUDO docker info >/dev/null 2>&1 && break; sleep 0.5; done
  $SUDO docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
echo "setup: ready"
