#!/usr/bin/env bash
# Installs QEMU >= 10 (from bookworm-backports) and the host tools the e2e
# guest rig needs, and leaves bookworm-backports configured (the guest kernel
# comes from there too). Idempotent; runs as root on a fresh Debian bookworm.
set -euo pipefail

die() {
  echo "install_qemu.sh: $*" >&2
  exit 1
}

export DEBIAN_FRONTEND=noninteractive
# Host tools from bookworm: cpio/gzip/xz pack the initramfs, kmod runs depmod,
# gcc/make/binutils build the out-of-tree modules, socat serves guest tests.
host_packages=(cpio gzip xz-utils kmod gcc make libc6-dev binutils socat)
# i2c-tools (i2cdetect, i2cget, i2cset, i2ctransfer, i2cdump) drive the i2c guest tests.
host_packages+=(i2c-tools)
# aarch64 guests (SCMI): dtc edits QEMU's devicetree, the cross compiler builds
# the out-of-tree SCMI modules; the kernel and busybox come as arm64 packages.
host_packages+=(device-tree-compiler gcc-12-aarch64-linux-gnu binutils-aarch64-linux-gnu)
# The container images (scripts/container.ts): podman builds and runs them, mmdebstrap makes
# their Debian base, runc runs them (crun 1.8.1 refuses some hosts' cgroup layout).
host_packages+=(podman mmdebstrap runc)
# The scsi tests copy sg3-utils, lsscsi, fio, e2fsprogs and util-linux
# (blkdiscard) into the guest.
host_packages+=(sg3-utils lsscsi fio e2fsprogs util-linux)
# Sound: aplay/arecord and /usr/share/alsa are copied into the guest; the
# daemon's alsa and pipewire back-ends load libasound2 and libpipewire-0.3-0,
# and the PipeWire test runs a headless daemon (pipewire, pipewire-bin) with
# WirePlumber on a private D-Bus (wireplumber, dbus) to link its streams, and
# drives the alsa back-end through PipeWire's ALSA plugin (pipewire-alsa).
host_packages+=(alsa-utils libasound2 libpipewire-0.3-0 pipewire pipewire-bin wireplumber dbus pipewire-alsa)
backports=/etc/apt/sources.list.d/bookworm-backports.sources
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() {
  "$@" >"$log" 2>&1 || {
    cat "$log" >&2
    die "failed: $*"
  }
}

qemu_major() {
  command -v qemu-system-x86_64 >/dev/null || return 0
  qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}

# Prints the first "URIs:"/"deb" mirror and its keyring from the existing
# sources, so the backports entry uses the same mirror.
main_source() {
  local file uri key
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -e $file && $file != "$backports" ]] || continue
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$file")
    key=$(awk '/^Signed-By:/ {print $2; exit}' "$file")
    if [[ -n $uri ]]; then
      echo "$uri ${key:-/usr/share/keyrings/debian-archive-keyring.gpg}"
      return
    fi
  done
  if [[ -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {
      for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list)
    [[ -n $uri ]] && echo "$uri /usr/share/keyrings/debian-archive-keyring.gpg" && return
  fi
  die "no Debian mirror found in /etc/apt/sources.list{,.d}"
}

# Parallel callers would otherwise fight over apt's lock.
exec 9>/tmp/vhost-device-deno-install.lock
flock 9

missing=()
for pkg in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
    missing+=("$pkg")
done
major=$(qemu_major)
need_qemu=$([[ ${major:-0} -ge 10 ]] && echo no || echo yes)
# qemu-storage-daemon (qemu-utils, same QEMU release): the third-party back-end
# vhost-user-check is run against in the README.
need_utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '^1:1[0-9]' &&
  echo no || echo yes)
need_gpiod=$(ldconfig -p | grep -q 'libgpiod\.so\.3 ' && gpioinfo --version 2>/dev/null |
  grep -q 'v2\.' && echo no || echo yes)
arm_major=$(command -v qemu-system-aarch64 >/dev/null &&
  qemu-system-aarch64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p' || true)
need_arm=$([[ ${arm_major:-0} -ge 10 ]] && echo no || echo yes)
has_arm64=$(dpkg --print-foreign-architectures | grep -qx arm64 && echo yes || echo no)
[[ $need_qemu == no && $need_arm == no && $need_utils == no && $has_arm64 == yes &&
  $need_gpiod == no && ${#missing[@]} -eq 0 && -f $backports ]] && exit 0
[[ $(id -u) -eq 0 ]] || die "must run as root to install QEMU and host tools"

if [[ ! -f $backports ]]; then
  source_line=$(main_source)
  read -r uri key <<<"$source_line"
  cat >"$backports" <<SOURCES
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: $key
SOURCES
fi
[[ $has_arm64 == yes ]] || run dpkg --add-architecture arm64
run apt-get update
if [[ ${#missing[@]} -gt 0 ]]; then
  run apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [[ $need_qemu == yes ]]; then
  run apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86
fi
if [[ $need_arm == yes ]]; then
  run apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-arm
fi
if [[ $need_utils == yes ]]; then
  run apt-get install -y --no-install-recommends -t bookworm-backports qemu-utils
fi
# vhost-device-gpio: libgpiod v2 (libgpiod.so.3) for real chips, and the v2
# tools (gpiodetect, gpioset, gpiomon…) the gpio e2e test copies into the
# guest. libgpiod3 replaces bookworm's libgpiod2 1.6 (Breaks/Replaces).
if [[ $need_gpiod == yes ]]; then
  run apt-get install -y --no-install-recommends -t bookworm-backports libgpiod3 gpiod
fi
major=$(qemu_major)
[[ ${major:-0} -ge 10 ]] || die "qemu-system-x86_64 >= 10 not installed (found '${major:-none}')"
