#!/usr/bin/env bash
# Root fs of the metrics stack's stand-ins: Debian 12 with InfluxDB 1.x and its client from
# Debian's own packages (the real server, not a stand-in), and Python for the Telegraf and
# Grafana stand-ins (telegraf, grafana beside this file). Usage: build-rootfs.sh OUT.tar
set -euo pipefail
out=$1
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
dir=$(mktemp -d /var/tmp/drfleet-metrics.XXXXXX)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase --include=python3,python3-yaml,influxdb,influxdb-client,procps \
  bookworm "$dir" "$mirror" >/dev/null
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -cf "$out.tmp" .
mv "$out.tmp" "$out"
