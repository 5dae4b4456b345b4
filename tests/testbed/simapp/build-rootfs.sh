#!/usr/bin/env bash
# Root fs of the stand-in simapp: Debian 12 with redis, boto3, the docker SDK, PIL and yaml
# from Debian's packages. moto (the S3 API server) comes as wheels from the controller. The
# metrics stack's images share it (tests/testbed/metrics): Debian's InfluxDB 1.x is in it too.
# Usage: build-rootfs.sh OUT.tar
set -euo pipefail
out=$1
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
dir=$(mktemp -d /var/tmp/drfleet-simapp.XXXXXX)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase \
  --include=python3,python3-pip,redis-server,python3-redis,python3-boto3,python3-docker,python3-pil,python3-yaml,procps,iproute2,bash,jq,util-linux,xmlstarlet,influxdb,influxdb-client \
  bookworm "$dir" "$mirror" >/dev/null
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -cf "$out.tmp" .
mv "$out.tmp" "$out"
