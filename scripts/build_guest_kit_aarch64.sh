#!/usr/bin/env bash
# Builds the aarch64 e2e guest kit (for devices x86 QEMU cannot attach, such
# as SCMI) from Debian packages into a cache directory: Debian's arm64 6.12
# kernel from bookworm-backports (unpacked, never installed), its modules, a
# static arm64 busybox, and scmi_transport_virtio.ko, scmi-hwmon.ko and
# scmi_iio.ko cross-compiled out of tree, because Debian's arm64 config leaves
# ARM_SCMI_TRANSPORT_VIRTIO, SENSORS_ARM_SCMI and IIO_SCMI unset.
# Idempotent: each step leaves a stamp file and is skipped when it exists.
set -euo pipefail

kit=${VHOST_GUEST_KIT_AARCH64:-/var/cache/vhost-device-deno/guest-kit-aarch64}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
scratch=$kit/scratch
log=$(mktemp)
trap 'rm -f "$log"' EXIT

die() {
  echo "build_guest_kit_aarch64.sh: $*" >&2
  exit 1
}

run() {
  "$@" >"$log" 2>&1 || {
    tail -n 60 "$log" >&2
    die "failed: $*"
  }
}

done_step() { [[ -e $kit/.stamp-$1 ]]; }
mark() { touch "$kit/.stamp-$1"; }

download() {
  mkdir -p "$scratch/debs"
  (cd "$scratch/debs" && run apt-get -o APT::Sandbox::User=root download "$@")
}

deb_of() { ls "$scratch/debs/$1"_*.deb; }

report() {
  echo "$kit"
  cat "$kit/kernel-version"
}

mkdir -p "$kit"
exec 9>"$kit/.lock"
flock 9
if done_step all; then
  report
  exit 0
fi
# QEMU for aarch64, the cross compiler, dtc and the arm64 package lists.
"$here/install_qemu.sh"

# The kernel packages of the one linux-6.12 version in bookworm-backports, so
# image, headers and source match (the x86 kit uses the same version).
if ! done_step resolve; then
  backports_version() {
    apt-cache madison linux-source-6.12 |
      awk -F' [|] ' '$3 ~ / bookworm-backports\// {print $2; exit}'
  }
  version=$(backports_version)
  if [[ -z $version ]]; then
    run apt-get update
    version=$(backports_version)
  fi
  [[ -n $version ]] || die "linux-source-6.12 not found in bookworm-backports"
  abi=$(apt-cache show "linux-headers-arm64:arm64=$version" |
    sed -n 's/^Depends: linux-headers-\(.*\)-arm64 .*/\1/p' | head -n 1)
  [[ -n $abi ]] || die "cannot find the kernel ABI of linux-headers-arm64:arm64=$version"
  image=linux-image-$abi-arm64-unsigned
  apt-cache show "$image:arm64=$version" >/dev/null 2>&1 || image=linux-image-$abi-arm64
  cat >"$kit/versions.env" <<VARS
version=$version
abi=$abi
image=$image
VARS
  echo "$abi-arm64" >"$kit/kernel-version"
  mark resolve
fi
# shellcheck source=/dev/null
. "$kit/versions.env"
kver=$abi-arm64
moddir=$kit/lib/modules/$kver

if [[ ! -e $scratch/debs/.stamp ]]; then
  rm -rf "$scratch/debs"
  # The kbuild tools (fixdep, modpost) run on this host: amd64.
  download "$image:arm64=$version" "linux-headers-$abi-arm64:arm64=$version" \
    "linux-headers-$abi-common=$version" "linux-kbuild-$abi:amd64=$version" \
    "linux-source-6.12=$version" busybox-static:arm64
  touch "$scratch/debs/.stamp"
fi

if ! done_step kernel; then
  rm -rf "$scratch/image" "${kit:?}/lib" "$kit/vmlinuz" "$kit/config"
  run dpkg-deb -x "$(deb_of "$image")" "$scratch/image"
  cp "$scratch/image/boot/vmlinuz-$kver" "$kit/vmlinuz"
  cp "$scratch/image/boot/config-$kver" "$kit/config"
  mkdir -p "$kit/lib/modules"
  src=$scratch/image/lib/modules/$kver
  [[ -d $src ]] || src=$scratch/image/usr/lib/modules/$kver
  mv "$src" "$moddir"
  rm -f "$moddir/build" "$moddir/source"
  rm -rf "$scratch/image"
  mark kernel
fi

if ! done_step busybox; then
  rm -rf "$scratch/busybox"
  run dpkg-deb -x "$(deb_of busybox-static)" "$scratch/busybox"
  install -m 0755 "$scratch/busybox/bin/busybox" "$kit/busybox"
  # The arm64 binary cannot run here to list its applets; the same Debian
  # version's amd64 busybox (same configuration) can.
  amd64=$(apt-cache madison busybox-static |
    awk -F' [|] ' '$3 ~ /amd64/ {print $2; exit}')
  mkdir -p "$scratch/bb-amd64"
  (cd "$scratch/bb-amd64" && run apt-get -o APT::Sandbox::User=root download \
    "busybox-static:amd64=$amd64")
  run dpkg-deb -x "$scratch/bb-amd64/"*.deb "$scratch/bb-amd64/root"
  "$scratch/bb-amd64/root/bin/busybox" --list-full >"$kit/busybox.list"
  rm -rf "$scratch/busybox" "$scratch/bb-amd64"
  mark busybox
fi

if ! done_step extra; then
  rm -rf "$moddir/extra" "$scratch/headers" "$scratch/src"
  mkdir -p "$moddir/extra" "$scratch/src/mod/transports"
  for pkg in "linux-headers-$abi-arm64" "linux-headers-$abi-common" "linux-kbuild-$abi"; do
    run dpkg-deb -x "$(deb_of "$pkg")" "$scratch/headers"
  done
  headers=$scratch/headers/usr/src/linux-headers-$kver
  # The Makefile includes the -common tree by its installed absolute path; it
  # already sets ARCH=arm64 and the aarch64-linux-gnu- compiler.
  sed -i "s|/usr/src/|$scratch/headers/usr/src/|" "$headers/Makefile"
  scmi=linux-source-6.12/drivers/firmware/arm_scmi
  dpkg-deb --fsys-tarfile "$(deb_of linux-source-6.12)" |
    tar -xO ./usr/src/linux-source-6.12.tar.xz |
    tar -xJ -C "$scratch/src" --wildcards "$scmi/*.h" "$scmi/transports/virtio.c" \
      linux-source-6.12/drivers/hwmon/scmi-hwmon.c \
      linux-source-6.12/drivers/iio/common/scmi_sensors/scmi_iio.c ||
    die "cannot extract the SCMI sources from linux-source-6.12"
  cp "$scratch/src/$scmi/"*.h "$scratch/src/mod/"
  cp "$scratch/src/$scmi/transports/virtio.c" "$scratch/src/mod/transports/"
  cp "$scratch/src/linux-source-6.12/drivers/hwmon/scmi-hwmon.c" \
    "$scratch/src/linux-source-6.12/drivers/iio/common/scmi_sensors/scmi_iio.c" \
    "$scratch/src/mod/"
  # VERSION1_COMPLIANCE: the device speaks VIRTIO 1.x (little-endian, no
  # legacy layout), as Kconfig's default for the in-tree build.
  cat >"$scratch/src/mod/Kbuild" <<'KBUILD'
obj-m := scmi_transport_virtio.o scmi-hwmon.o scmi_iio.o
scmi_transport_virtio-y := transports/virtio.o
CFLAGS_transports/virtio.o += -DCONFIG_ARM_SCMI_TRANSPORT_VIRTIO_VERSION1_COMPLIANCE=1
KBUILD
  # pahole is absent, so no BTF for these modules.
  run make -C "$headers" M="$scratch/src/mod" CONFIG_DEBUG_INFO_BTF_MODULES= \
    -j "$(nproc)" modules
  for ko in "$scratch/src/mod/"*.ko; do
    aarch64-linux-gnu-strip --strip-debug -o "$moddir/extra/$(basename "$ko")" "$ko"
  done
  rm -rf "$scratch/headers" "$scratch/src"
  mark extra
fi

if ! done_step depmod; then
  run depmod -b "$kit" "$kver"
  mark depmod
fi

rm -rf "$scratch"
mark all
report
