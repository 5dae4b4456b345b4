#!/usr/bin/env bash
# Sets up a fresh Debian 12 / Ubuntu 22.04 or later for drfleet, as root or as a user with sudo:
# the Docker engine, drfleet in a virtual environment of its own (.venv here: the system's
# Python is left as it ships, externally managed on Debian 12 and Ubuntu 24.04, PEP 668), and
# `drfleet` on every user's PATH (/usr/local/bin/drfleet, a link into .venv).
#   scripts/setup.sh          what `drfleet` needs to run here
#   scripts/setup.sh --test   also what the test suite needs (debootstrap, chromium, test tools)
# Safe to run again: it installs only what is missing. A step that fails stops it, named.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
venv="$here/.venv"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
fail() { echo "setup: $*" >&2; exit 1; }
test_too=""; [ "${1:-}" = "--test" ] && test_too=1

packages=(docker.io openssh-client iproute2 python3)
# Debian and Ubuntu ship venv without ensurepip; python3-venv brings it
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
[ -n "$test_too" ] && packages+=(debootstrap busybox-static chromium openssl)  # openssl: the test CA
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq || fail "apt-get update failed"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
fi

if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then  # missing, or its python is gone
  echo "setup: making the virtual environment $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv $venv failed"
fi
extra=""; [ -n "$test_too" ] && extra="[test]"
echo "setup: installing drfleet${extra} into $venv"
# pipefail keeps pip's own status; only the noise of unusable find-links is left out
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; } \
  || fail "pip could not install drfleet into $venv (its message is above)"
"$venv/bin/drfleet" --version >/dev/null || fail "$venv/bin/drfleet does not run"
link=/usr/local/bin/drfleet
if [ "$(readlink "$link" 2>/dev/null || true)" != "$venv/bin/drfleet" ]; then
  $SUDO ln -sfn "$venv/bin/drfleet" "$link" || fail "cannot link $link"
fi

if ! $SUDO docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl start docker || fail "systemctl start docker failed"
  else  # containers and CI machines without systemd
    echo "setup: starting dockerd (log: /var/log/dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do $SUDO docker info >/dev/null 2>&1 && break; sleep 0.5; done
  $SUDO docker info >/dev/null 2>&1 || fail "dockerd did not start; see /var/log/dockerd.log"
fi
echo "setup: ready: drfleet is $link (in the checkout, .venv/bin/invoke runs the same tasks)"
