#!/usr/bin/env bash
# Builds an Ubuntu test-bed host as Canonical's EC2 server image boots: Ubuntu 24.04 (noble)
# or 22.04 (jammy) from Ubuntu's archive, with cloud-init doing at first boot what it does on
# EC2 (the `ubuntu` user with password-less sudo and the key pair's key, the user data's
# cloud-config, power_state), sshd without host keys of its own (cloud-init writes them), and
# the first-boot apt lock (see drfleet-firstboot-apt below). No docker: provisioning installs it.
# Usage: build-ubuntu-rootfs.sh noble|jammy OUT.tar   (the caller caches OUT.tar by this
# file's hash)
#
# The archive's signing key comes from ubuntu-keyring, fetched from the archive itself; it is
# trusted only after its fingerprint matches the one pinned here (Ubuntu Archive Automatic
# Signing Key (2018), as published on ubuntu.com and in every Ubuntu's /etc/apt/trusted.gpg.d).
set -euo pipefail
release=$1
out=$2
archive=${DRFLEET_UBUNTU_ARCHIVE:-http://archive.ubuntu.com/ubuntu}
fingerprint=F6ECB3762474EDA9D21B7022871920D1991BC93C
case $release in noble | jammy) ;; *) echo "release: noble or jammy" >&2; exit 2 ;; esac
work=$(mktemp -d /var/tmp/drfleet-ubuntu.XXXXXX)
trap 'rm -rf "$work"' EXIT
dir=$work/root

curl -fsS -o "$work/Packages.gz" "$archive/dists/$release/main/binary-amd64/Packages.gz"
deb=$(zcat "$work/Packages.gz" |
  awk '/^Package: ubuntu-keyring$/ {p=1} p && /^Filename:/ {f=$2; p=0} END {print f}')
curl -fsS -o "$work/keyring.deb" "$archive/$deb"
dpkg-deb -x "$work/keyring.deb" "$work/keyring"
export GNUPGHOME=$work/gnupg
install -d -m 0700 "$GNUPGHOME"
gpg -q --no-default-keyring --keyring "$work/keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg" \
  --export "$fingerprint" > "$work/archive.gpg"
got=$(gpg -q --with-colons --show-keys "$work/archive.gpg" | awk -F: '/^fpr/ {print $10; exit}')
if [ "$got" != "$fingerprint" ]; then
  echo "ubuntu-keyring has no key $fingerprint (got: ${got:-none}); refusing the archive" >&2
  exit 1
fi

# debootstrap's jammy script is Ubuntu's generic one (gutsy); it bootstraps noble the same way.
# It resolves no virtual packages: python3-cffi-backend provides what cryptography needs on jammy.
debootstrap --variant=minbase --keyring="$work/archive.gpg" --components=main,universe \
  --include=openssh-server,python3,sudo,iproute2,iputils-ping,procps,ca-certificates,systemd,systemd-sysv,dbus,cloud-init,apt-utils,gpg,locales,lsb-release,python3-cffi-backend \
  "$release" "$dir" "$archive" /usr/share/debootstrap/scripts/jammy >/dev/null

cat > "$dir/etc/apt/sources.list" <<EOF
deb $archive $release main universe
deb $archive $release-updates main universe
EOF
rm -f "$dir"/etc/apt/sources.list.d/*.sources

# cloud-init: the instance's seed comes as NoCloud files the launcher writes (meta-data with
# the key pair, the user data as RunInstances got it); the container's network is docker's.
cat > "$dir/etc/cloud/cloud.cfg.d/90-drfleet-testbed.cfg" <<'EOF'
datasource_list: [ NoCloud, None ]
network: {config: disabled}
EOF
# Host keys: none in the image; cloud-init makes them (or writes the user data's) per host.
rm -f "$dir"/etc/ssh/ssh_host_*
printf 'UseDNS no\n' > "$dir/etc/ssh/sshd_config.d/50-testbed.conf"

# The first-boot apt lock: Ubuntu's apt-daily and unattended-upgrades run in the first minutes
# after boot and hold dpkg's locks (fcntl locks, as apt takes them) while they work. This unit
# takes the same locks for DRFLEET_FIRSTBOOT_APT seconds (default 20) after cloud-init.
cat > "$dir/usr/local/sbin/drfleet-firstboot-apt" <<'EOF'
#!/usr/bin/python3
import fcntl, os, time
hold = int(os.environ.get("DRFLEET_FIRSTBOOT_APT", "20"))
fds = []
for path in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock"):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    fds.append(fd)
time.sleep(hold)
EOF
chmod 0755 "$dir/usr/local/sbin/drfleet-firstboot-apt"
cat > "$dir/etc/systemd/system/drfleet-firstboot-apt.service" <<'EOF'
[Unit]
Description=Hold dpkg's locks after first boot, as unattended-upgrades does
After=cloud-init.service
ConditionPathExists=!/var/lib/drfleet-firstboot-apt.done

[Service]
Type=oneshot
EnvironmentFile=-/etc/default/drfleet-firstboot-apt
ExecStart=/usr/local/sbin/drfleet-firstboot-apt
ExecStartPost=/usr/bin/touch /var/lib/drfleet-firstboot-apt.done
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/drfleet-firstboot-apt.service \
  "$dir/etc/systemd/system/multi-user.target.wants/drfleet-firstboot-apt.service"

# Units that cannot work in a container and would leave the system "degraded".
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
            systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
            systemd-remount-fs.service systemd-networkd-wait-online.service; do
  ln -sf /dev/null "$dir/etc/systemd/system/$unit"
done

: > "$dir/etc/machine-id"
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -cf "$out.tmp" .
mv "$out.tmp" "$out"
