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
arch=arm64
qual=:arm64
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=kit_lib.sh
. "$here/kit_lib.sh"

lock_kit
if done_step all; then
  report
  exit 0
fi
# QEMU for aarch64, the cross compiler, dtc and the arm64 package lists.
"$here/install_qemu.sh"

# The same kernel version as the x86 kit.
resolve_kernel
download_kernel
unpack_kernel

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
  rm -rf "$moddir/extra" "$scratch/src"
  mkdir -p "$moddir/extra" "$scratch/src/mod/transports"
  # The headers' Makefile already sets ARCH=arm64 and the aarch64-linux-gnu-
  # compiler.
  unpack_headers
  scmi=linux-source-6.12/drivers/firmware/arm_scmi
  extract_source "$scratch/src" --wildcards "$scmi/*.h" "$scmi/transports/virtio.c" \
    linux-source-6.12/drivers/hwmon/scmi-hwmon.c \
    linux-source-6.12/drivers/iio/common/scmi_sensors/scmi_iio.c
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
  build_modules "$scratch/src/mod" aarch64-linux-gnu-strip
  rm -rf "$scratch/headers" "$scratch/src"
  mark extra
fi

run_depmod
finish_kit
