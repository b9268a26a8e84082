#!/usr/bin/env bash
# Runs one device from source: scripts/run.sh <device> [flags…]
# e.g. scripts/run.sh rng --socket-path /tmp/rng.sock
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
device=${1:?usage: scripts/run.sh <device> [flags…] (devices: $(ls devices | tr '\n' ' '))}
shift
[[ -f devices/$device/main.ts ]] || { echo "run.sh: no device '$device' (have: $(ls devices | tr '\n' ' '))" >&2; exit 2; }
# vhost-device-gpio's real chips need libgpiod v2.
[[ $device == gpio ]] && bash scripts/install_libgpiod.sh
exec deno run --allow-all "devices/$device/main.ts" "$@"
