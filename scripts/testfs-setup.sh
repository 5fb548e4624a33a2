#!/usr/bin/env bash
# Install what the simulated cluster filesystem (tests/fusefs.py) needs: libfuse 2 (which the
# fusepy bindings load), the fuse3 tools (fusermount3, /etc/fuse.conf) and fusepy itself.
# Idempotent: does nothing when all of it is already there. Needs root for apt-get.
set -euo pipefail

need_apt=0
for pkg in libfuse2 fuse3; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "testfs-setup: installing libfuse2 and fuse3 needs root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian 12 names the library libfuse2, Debian 13 and Ubuntu 24.04 libfuse2t64
    apt-get install -y -qq libfuse2 fuse3 >/dev/null 2>&1 || \
        apt-get install -y -qq libfuse2t64 fuse3 >/dev/null
fi
python -c "import fuse" 2>/dev/null || python -m pip install -q "fusepy==3.0.1"
if [ ! -e /dev/fuse ]; then
    echo "testfs-setup: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2
    exit 1
fi
python -c "import fuse; print('testfs-setup: fusepy', fuse.__file__, 'with libfuse', fuse._libfuse_path)"
