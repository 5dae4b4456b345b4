#!/usr/bin/env bash
# Builds the test-bed host root filesystem: Debian 12 with systemd, sshd, python3 and sudo,
# and deliberately WITHOUT docker, so provisioning has something real to do.
# Usage: build-rootfs.sh OUT.tar   (the caller caches OUT.tar by this file's hash)
set -euo pipefail
out=$1
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
dir=$(mktemp -d /var/tmp/drfleet-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT

debootstrap --variant=minbase \
  --include=openssh-server,python3,sudo,iproute2,iputils-ping,procps,ca-certificates,systemd,systemd-sysv,dbus \
  bookworm "$dir" "$mirror" >/dev/null

# Each host must get its own SSH host keys at first boot, or every host would share them
# (and "the key changed" could never be tested). sshd -t refuses to start without keys.
rm -f "$dir"/etc/ssh/ssh_host_*
mkdir -p "$dir/etc/systemd/system/ssh.service.d"
cat > "$dir/etc/systemd/system/ssh.service.d/hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
printf 'UseDNS no\nPasswordAuthentication no\n' > "$dir/etc/ssh/sshd_config.d/testbed.conf"

# Units that cannot work in a container and would leave the system "degraded".
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
            systemd-remount-fs.service; do
  ln -sf /dev/null "$dir/etc/systemd/system/$unit"
done

# The non-root login user, with password-less sudo, as on a cloud image.
chroot "$dir" useradd --create-home --shell /bin/bash fleet
echo 'fleet ALL=(ALL) NOPASSWD:ALL' > "$dir/etc/sudoers.d/fleet"
chmod 0440 "$dir/etc/sudoers.d/fleet"
install -d -m 0700 -o 1000 -g 1000 "$dir/home/fleet/.ssh"

: > "$dir/etc/machine-id"
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -cf "$out.tmp" .
mv "$out.tmp" "$out"
