#!/usr/bin/env bash
# Headless Chromium and its driver from Debian's packages, for the browser tests
# (tests/test_view.py, run by CI with MEMO_REQUIRE_BROWSER=1) and selenium from PyPI.
#
#   scripts/browser-setup.sh          install what is missing, then check that both start
#
# Idempotent: installs nothing when /usr/bin/chromium and /usr/bin/chromedriver are there
# and selenium imports. Needs root for apt-get (it is not used when nothing is missing).
set -euo pipefail

log() { echo "browser-setup: $*" >&2; }

if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        log "chromium or chromedriver is missing and installing them needs root"
        exit 1
    fi
    log "installing chromium and chromium-driver (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core \
        >/dev/null
fi

PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import selenium" 2>/dev/null; then
    log "installing selenium (pip)"
    "$PYTHON" -m pip install -q "selenium>=4.20"
fi

# both must start: a broken install fails here rather than in the tests
/usr/bin/chromium --version 2>/dev/null  # its wrapper script warns on some shells
/usr/bin/chromedriver --version
