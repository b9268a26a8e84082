#!/usr/bin/env bash
# Makes sure libgpiod v2 (libgpiod.so.3) is installed for vhost-device-gpio's
# real chips: package libgpiod3, which bookworm has only in bookworm-backports
# (it replaces bookworm's libgpiod2 1.6). Run by `scripts/run.sh gpio`; quiet
# and fast when the library is there. Simulated chips (-l sN) do not need it.
set -euo pipefail
ldconfig -p | grep -q 'libgpiod\.so\.3 ' && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "install_libgpiod.sh: libgpiod.so.3 is missing; as root: apt-get install -t bookworm-backports libgpiod3" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
exec 9>/tmp/vhost-device-deno-install.lock
flock 9
if [[ ! -f /etc/apt/sources.list.d/bookworm-backports.sources ]]; then
  # install_qemu.sh adds bookworm-backports from the machine's own mirror (and installs libgpiod3).
  flock -u 9
  exec bash "$(dirname "$0")/install_qemu.sh"
fi
apt-get install -y -qq --no-install-recommends -t bookworm-backports libgpiod3 >/dev/null ||
  { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends -t bookworm-backports libgpiod3 >/dev/null; }
