#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine; .ci/run runs exactly this.
# System tools the network-namespace tests need (iproute2, iptables) and the page tests
# need (chromium, chromium-driver), and node/npm for the JavaScript interop test, are installed with
# apt-get when missing and we are root; everything else comes from PyPI into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} missing and not installable here; the NAT tests will fail" \
         "and so will the page tests (chromium) and the JavaScript interop test (npm)" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
