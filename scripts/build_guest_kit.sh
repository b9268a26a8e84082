#!/usr/bin/env bash
# Builds the e2e guest kit from Debian packages into a cache directory: Debian's
# 6.12 kernel from bookworm-backports (unpacked, never installed), its modules,
# a static busybox, gpio-virtio.ko/i2c-virtio.ko built out of tree because
# Debian's config leaves CONFIG_GPIO_VIRTIO and CONFIG_I2C_VIRTIO unset, and
# bookworm's QEMU 7.2 (unpacked) to test against the older front-end.
# Idempotent: each step leaves a stamp file and is skipped when it exists.
set -euo pipefail

kit=${VHOST_GUEST_KIT:-/var/cache/vhost-device-deno/guest-kit}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
scratch=$kit/scratch
log=$(mktemp)
trap 'rm -f "$log"' EXIT

die() {
  echo "build_guest_kit.sh: $*" >&2
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

# Downloads packages into $scratch/debs; as root apt would otherwise warn that
# its sandbox user cannot write there.
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
# Test files running in parallel may all ask for the kit at once.
exec 9>"$kit/.lock"
flock 9
if done_step all && done_step qemu72 && done_step gpiosim; then
  report
  exit 0
fi
# Host tools (and the bookworm-backports source) come from install_qemu.sh.
"$here/install_qemu.sh"

# Pin every kernel package to the one linux-6.12 version in bookworm-backports
# so that image, headers and source match.
if ! done_step resolve; then
  backports_version() {
    apt-cache madison linux-source-6.12 |
      awk -F' [|] ' '$3 ~ / bookworm-backports\// {print $2; exit}'
  }
  version=$(backports_version)
  # The source may be configured while its package lists are not fetched yet.
  if [[ -z $version ]]; then
    run apt-get update
    version=$(backports_version)
  fi
  [[ -n $version ]] || die "linux-source-6.12 not found in bookworm-backports"
  abi=$(apt-cache show "linux-headers-amd64=$version" |
    sed -n 's/^Depends: linux-headers-\(.*\)-amd64 .*/\1/p' | head -n 1)
  [[ -n $abi ]] || die "cannot find the kernel ABI of linux-headers-amd64=$version"
  image=linux-image-$abi-amd64-unsigned
  apt-cache show "$image=$version" >/dev/null 2>&1 || image=linux-image-$abi-amd64
  cat >"$kit/versions.env" <<VARS
version=$version
abi=$abi
image=$image
VARS
  echo "$abi-amd64" >"$kit/kernel-version"
  mark resolve
fi
# shellcheck source=/dev/null
. "$kit/versions.env"
kver=$abi-amd64
moddir=$kit/lib/modules/$kver

# The stamp lives with the .debs, which are deleted once the kit is complete.
if [[ ! -e $scratch/debs/.stamp ]]; then
  rm -rf "$scratch/debs"
  download "$image=$version" "linux-headers-$abi-amd64=$version" \
    "linux-headers-$abi-common=$version" "linux-kbuild-$abi=$version" \
    "linux-source-6.12=$version" busybox-static
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
  # build/source point at /usr/src on an installed system; meaningless here.
  rm -f "$moddir/build" "$moddir/source"
  rm -rf "$scratch/image"
  mark kernel
fi

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
  rm -rf "$moddir/extra" "$scratch/headers" "$scratch/src"
  mkdir -p "$moddir/extra"
  if [[ ${#sources[@]} -gt 0 ]]; then
    for pkg in "linux-headers-$abi-amd64" "linux-headers-$abi-common" "linux-kbuild-$abi"; do
      run dpkg-deb -x "$(deb_of "$pkg")" "$scratch/headers"
    done
    headers=$scratch/headers/usr/src/linux-headers-$kver
    # The Makefile includes the -common tree by its installed absolute path.
    sed -i "s|/usr/src/|$scratch/headers/usr/src/|" "$headers/Makefile"
    mkdir -p "$scratch/src/mod"
    dpkg-deb --fsys-tarfile "$(deb_of linux-source-6.12)" |
      tar -xO ./usr/src/linux-source-6.12.tar.xz |
      tar -xJ -C "$scratch/src" "${sources[@]/#/linux-source-6.12/}" ||
      die "cannot extract ${sources[*]} from linux-source-6.12"
    objs=()
    for file in "${sources[@]}"; do
      cp "$scratch/src/linux-source-6.12/$file" "$scratch/src/mod/"
      name=$(basename "$file" .c)
      objs+=("$name.o")
    done
    echo "obj-m := ${objs[*]}" >"$scratch/src/mod/Kbuild"
    # pahole is absent, so no BTF for these modules.
    run make -C "$headers" M="$scratch/src/mod" CONFIG_DEBUG_INFO_BTF_MODULES= \
      -j "$(nproc)" modules
    for ko in "$scratch/src/mod/"*.ko; do
      strip --strip-debug -o "$moddir/extra/$(basename "$ko")" "$ko"
    done
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
  rm -rf "$scratch/headers" "$scratch/gpiosim"
  for pkg in "linux-headers-$abi-amd64" "linux-headers-$abi-common" "linux-kbuild-$abi"; do
    run dpkg-deb -x "$(deb_of "$pkg")" "$scratch/headers"
  done
  headers=$scratch/headers/usr/src/linux-headers-$kver
  sed -i "s|/usr/src/|$scratch/headers/usr/src/|" "$headers/Makefile"
  mkdir -p "$scratch/gpiosim/mod"
  dpkg-deb --fsys-tarfile "$(deb_of linux-source-6.12)" |
    tar -xO ./usr/src/linux-source-6.12.tar.xz |
    tar -xJ -C "$scratch/gpiosim" linux-source-6.12/drivers/gpio/gpio-sim.c \
      linux-source-6.12/kernel/irq/irq_sim.c ||
    die "cannot extract gpio-sim.c and irq_sim.c from linux-source-6.12"
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
  run make -C "$headers" M="$scratch/gpiosim/mod" CONFIG_DEBUG_INFO_BTF_MODULES= \
    -j "$(nproc)" modules
  mkdir -p "$moddir/extra"
  for ko in gpio-sim gpio-level-irq; do
    strip --strip-debug -o "$moddir/extra/$ko.ko" "$scratch/gpiosim/mod/$ko.ko"
  done
  rm -rf "$scratch/headers" "$scratch/gpiosim"
  # modules.dep must list them (and gpio-sim's configfs dependency).
  rm -f "$kit/.stamp-depmod"
  mark gpiosim
fi

if ! done_step depmod; then
  run depmod -b "$kit" "$kver"
  mark depmod
fi

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

rm -rf "$scratch"
mark all
report
