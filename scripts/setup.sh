#!/usr/bin/env bash
# Makes sure Deno 2.9.6 is on PATH, installing it from npm when it is not.
# Sourced by run.sh and test.sh; safe to run twice.
set -euo pipefail

DENO_VERSION=2.9.6

if ! command -v deno >/dev/null 2>&1 || [[ $(deno --version | head -n 1) != "deno $DENO_VERSION "* ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing npm from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  echo "setup: installing deno@$DENO_VERSION from npm" >&2
  npm install -g --silent "deno@$DENO_VERSION" >/dev/null
  hash -r
fi
