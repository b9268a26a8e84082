#!/usr/bin/env bash
# Builds the e2e guest kit from Debian packages into a cache directory: Debian's
# 6.12 kernel from bookworm-backports (unpacked, never installed), its modules,
# a static busybox, gpio-virtio.ko/i2c-virtio.ko built out of tree because
# Debian's config leaves CONFIG_GPIO_VIRTIO and CONFIG_I2C_VIRTIO unset, and
# bookworm's QEMU 7.2 (unpacked) to test against the older front-end.
# Idempotent: each step leaves a stamp file and is skipped when it exists.
set -euo pipefail

kit=${VHOST_GUEST_KIT:-/var/cache/vhost-device-deno/guest-kit}
arch=amd64
qual=
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=kit_lib.sh
. "$here/kit_lib.sh"

lock_kit
if done_step all && done_step qemu72 && done_step gpiosim; then
  report
  exit 0
fi
# Host tools (and the bookworm-backports source) come from install_qemu.sh.
"$here/install_qemu.sh"

resolve_kernel
download_kernel
unpack_kernel

if ! done_step busybox; then
  rm -rf "$scratch/busybox"
  run dpkg-deb -x "$(deb_of busybox-static)" "$scratch/busybox"
  install -m 0755 "$scratch/busybox/bin/busybox" "$kit/busybox"
  rm -rf "$scratch/busybox"
  mark busybox
fi

if ! done_step extra; then
  # Build only what Debian's kernel lacks.
  sources=()
  for pair in GPIO_VIRTIO:drivers/gpio/gpio-virtio.c \
    I2C_VIRTIO:drivers/i2c/busses/i2c-virtio.c; do
    if setting=$(grep -E "^CONFIG_${pair%%:*}=[ym]" "$kit/config"); then
      echo "using Debian's ${pair##*/} ($setting)"
    else
      sources+=("${pair#*:}")
    fi
  done
  rm -rf "$moddir/extra" "$scratch/src"
  mkdir -p "$moddir/extra"
  if [[ ${#sources[@]} -gt 0 ]]; then
    unpack_headers
    extract_source "$scratch/src" "${sources[@]/#/linux-source-6.12/}"
    mkdir -p "$scratch/src/mod"
    objs=()
    for file in "${sources[@]}"; do
      cp "$scratch/src/linux-source-6.12/$file" "$scratch/src/mod/"
      name=$(basename "$file" .c)
      objs+=("$name.o")
    done
    echo "obj-m := ${objs[*]}" >"$scratch/src/mod/Kbuild"
    build_modules "$scratch/src/mod" strip
    rm -rf "$scratch/headers" "$scratch/src"
  fi
  mark extra
fi

# For the gpio e2e tests: gpio-sim, a real kernel GPIO chip to run the daemon
# against inside the guest (Debian builds neither it nor its irq_sim
# dependency: both go into one module, irq_sim patched to use the exported
# generic_handle_irq), and gpio-level-irq from tests/e2e/guest_modules, a
# consumer of level-triggered GPIO interrupts (no userspace API asks for one).
if ! done_step gpiosim || [[ ! -f $moddir/extra/gpio-sim.ko ]]; then
  rm -rf "$scratch/gpiosim"
  unpack_headers
  extract_source "$scratch/gpiosim" linux-source-6.12/drivers/gpio/gpio-sim.c \
    linux-source-6.12/kernel/irq/irq_sim.c
  mkdir -p "$scratch/gpiosim/mod"
  cp "$scratch/gpiosim/linux-source-6.12/drivers/gpio/gpio-sim.c" "$scratch/gpiosim/mod/gpio-sim-main.c"
  sed 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' \
    "$scratch/gpiosim/linux-source-6.12/kernel/irq/irq_sim.c" >"$scratch/gpiosim/mod/irq_sim.c"
  grep -q 'generic_handle_irq(irqnum);' "$scratch/gpiosim/mod/irq_sim.c" ||
    die "irq_sim.c changed: the irq_to_desc patch no longer applies"
  cp "$here/../tests/e2e/guest_modules/gpio-level-irq.c" "$scratch/gpiosim/mod/"
  cat >"$scratch/gpiosim/mod/Kbuild" <<'KBUILD'
obj-m := gpio-sim.o gpio-level-irq.o
gpio-sim-y := gpio-sim-main.o irq_sim.o
KBUILD
  build_modules "$scratch/gpiosim/mod" strip
  rm -rf "$scratch/headers" "$scratch/gpiosim"
  # modules.dep must list them (and gpio-sim's configfs dependency).
  rm -f "$kit/.stamp-depmod"
  mark gpiosim
fi

run_depmod

# Bookworm's own QEMU 7.2, unpacked beside the kit and never installed, so the
# e2e tests can check the daemons against the oldest front-end we support. It
# runs on the libraries QEMU 10 from install_qemu.sh brought in.
if ! done_step qemu72; then
  q72=$(apt-cache madison qemu-system-x86 | awk -F' [|] ' '$3 ~ / bookworm\/main / {print $2; exit}')
  [[ -n $q72 ]] || die "qemu-system-x86 7.2 not found in bookworm"
  rm -rf "$kit/qemu-7.2" "$scratch/qemu72"
  mkdir -p "$scratch/qemu72"
  # The binary, and its accelerator and device modules (QEMU_MODULE_DIR).
  (cd "$scratch/qemu72" && run apt-get -o APT::Sandbox::User=root download \
    "qemu-system-x86=$q72" "qemu-system-common=$q72")
  for deb in "$scratch/qemu72/"*.deb; do
    run dpkg-deb -x "$deb" "$kit/qemu-7.2"
  done
  "$kit/qemu-7.2/usr/bin/qemu-system-x86_64" --version | grep -q "version 7\.2" ||
    die "the unpacked QEMU 7.2 does not run"
  rm -rf "$scratch/qemu72"
  mark qemu72
fi

finish_kit
