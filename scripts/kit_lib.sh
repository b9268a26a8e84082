# Steps shared by build_guest_kit.sh (amd64) and build_guest_kit_aarch64.sh
# (arm64): both unpack the same bookworm-backports 6.12 kernel for their
# architecture and build the modules Debian leaves out against its headers.
# Sourced, not run. The caller sets:
#   kit      the kit directory;
#   arch     the Debian architecture (amd64 or arm64);
#   qual     what to append to a package name to get it for $arch
#            ("" natively, ":arm64" when cross-building).
# Every step leaves a stamp file in $kit and is skipped when it exists.

scratch=$kit/scratch
log=$(mktemp)
trap 'rm -f "$log"' EXIT

die() {
  echo "$(basename "$0"): $*" >&2
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

# Takes the kit's lock: test files running in parallel may all ask for the
# kit at once.
lock_kit() {
  mkdir -p "$kit"
  exec 9>"$kit/.lock"
  flock 9
}

# Pins every kernel package to the one linux-6.12 version in
# bookworm-backports, so image, headers and source match, and sets
# $version, $abi, $image, $kver and $moddir.
resolve_kernel() {
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
    abi=$(apt-cache show "linux-headers-$arch$qual=$version" |
      sed -n "s/^Depends: linux-headers-\(.*\)-$arch .*/\1/p" | head -n 1)
    [[ -n $abi ]] || die "cannot find the kernel ABI of linux-headers-$arch$qual=$version"
    image=linux-image-$abi-$arch-unsigned
    apt-cache show "$image$qual=$version" >/dev/null 2>&1 || image=linux-image-$abi-$arch
    cat >"$kit/versions.env" <<VARS
version=$version
abi=$abi
image=$image
VARS
    echo "$abi-$arch" >"$kit/kernel-version"
    mark resolve
  fi
  # shellcheck source=/dev/null
  . "$kit/versions.env"
  kver=$abi-$arch
  moddir=$kit/lib/modules/$kver
}

# Downloads the kernel image, headers, kbuild tools, source and a static
# busybox. The stamp lives with the .debs, deleted once the kit is complete.
download_kernel() {
  if [[ ! -e $scratch/debs/.stamp ]]; then
    rm -rf "$scratch/debs"
    # The kbuild tools (fixdep, modpost) run on this host, so they are native.
    download "$image$qual=$version" "linux-headers-$abi-$arch$qual=$version" \
      "linux-headers-$abi-common=$version" "linux-kbuild-$abi=$version" \
      "linux-source-6.12=$version" "busybox-static$qual"
    touch "$scratch/debs/.stamp"
  fi
}

# Unpacks vmlinuz, the config and the modules into the kit.
unpack_kernel() {
  if ! done_step kernel; then
    rm -rf "$scratch/image" "${kit:?}/lib" "$kit/vmlinuz" "$kit/config"
    run dpkg-deb -x "$(deb_of "$image")" "$scratch/image"
    cp "$scratch/image/boot/vmlinuz-$kver" "$kit/vmlinuz"
    cp "$scratch/image/boot/config-$kver" "$kit/config"
    mkdir -p "$kit/lib/modules"
    local src=$scratch/image/lib/modules/$kver
    [[ -d $src ]] || src=$scratch/image/usr/lib/modules/$kver
    mv "$src" "$moddir"
    # build/source point at /usr/src on an installed system; meaningless here.
    rm -f "$moddir/build" "$moddir/source"
    rm -rf "$scratch/image"
    mark kernel
  fi
}

# Unpacks the kernel headers into $scratch/headers and sets $headers, the tree
# to build modules against.
unpack_headers() {
  rm -rf "$scratch/headers"
  local pkg
  for pkg in "linux-headers-$abi-$arch" "linux-headers-$abi-common" "linux-kbuild-$abi"; do
    run dpkg-deb -x "$(deb_of "$pkg")" "$scratch/headers"
  done
  headers=$scratch/headers/usr/src/linux-headers-$kver
  # The Makefile includes the -common tree by its installed absolute path.
  sed -i "s|/usr/src/|$scratch/headers/usr/src/|" "$headers/Makefile"
}

# extract_source DIR TAR-ARGS...: extracts files of the kernel source tree
# (paths below linux-source-6.12/) into DIR.
extract_source() {
  local dir=$1
  shift
  mkdir -p "$dir"
  dpkg-deb --fsys-tarfile "$(deb_of linux-source-6.12)" |
    tar -xO ./usr/src/linux-source-6.12.tar.xz |
    tar -xJ -C "$dir" "$@" ||
    die "cannot extract $* from linux-source-6.12"
}

# build_modules DIR STRIP: builds the out-of-tree modules whose Kbuild is in
# DIR and installs them, stripped with STRIP, into the kit's extra/.
build_modules() {
  # pahole is absent, so no BTF for these modules.
  run make -C "$headers" M="$1" CONFIG_DEBUG_INFO_BTF_MODULES= -j "$(nproc)" modules
  mkdir -p "$moddir/extra"
  local ko
  for ko in "$1/"*.ko; do
    "$2" --strip-debug -o "$moddir/extra/$(basename "$ko")" "$ko"
  done
}

run_depmod() {
  if ! done_step depmod; then
    run depmod -b "$kit" "$kver"
    mark depmod
  fi
}

finish_kit() {
  rm -rf "$scratch"
  mark all
  report
}
