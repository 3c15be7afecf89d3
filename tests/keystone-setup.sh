#!/bin/sh
# Installs a real OpenStack Keystone and the uwsgi server from PyPI into
# <repo>/target/keystone-venv, where the tests (tests/common/keystone.rs) look
# for them. Quick (a second or two, one line of output) when that venv is
# already there and works.
#
# Needs python3 with venv and pip, Python's C headers and a C compiler (uwsgi
# is built from source). On Debian bookworm:
#   apt-get install python3 python3-venv python3-dev gcc libc6-dev
# Set PYTHON to use another interpreter than the python3 on PATH.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/target/keystone-venv"
# Known to work together (see shared/notes/keystone.md); keystone's own
# dependencies float within what it declares.
keystone_req='keystone==30.*'
uwsgi_req='uwsgi==2.0.*'
apt_hint='apt-get install python3 python3-venv python3-dev gcc libc6-dev'

# Sets $versions when both programs run.
works() {
    ks=$("$venv/bin/keystone-manage" --version 2>/dev/null) &&
        uw=$("$venv/bin/uwsgi" --version 2>/dev/null) &&
        versions="keystone $ks, uwsgi $uw"
}

if works; then
    echo "keystone-setup: $venv is ready ($versions)"
    exit 0
fi

fail() {
    echo "keystone-setup: $*" >&2
    exit 1
}

py=${PYTHON:-python3}
command -v "$py" >/dev/null 2>&1 ||
    fail "$py not found; on Debian: $apt_hint"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    fail "keystone 30 needs Python >= 3.10; $py is $("$py" --version 2>&1)"
"$py" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    fail "$py cannot make a venv with pip (no venv/ensurepip module); on Debian: $apt_hint"
# uwsgi compiles against Python.h and links libpython.
"$py" -c 'import os, sysconfig, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
    fail "Python's C headers (Python.h) are missing for $py, needed to build uwsgi; on Debian: $apt_hint"
cc=${CC:-gcc}
command -v "$cc" >/dev/null 2>&1 ||
    fail "no C compiler ($cc), needed to build uwsgi; on Debian: $apt_hint"
printf '#include <stdio.h>\nint main(void){return 0;}\n' >"${TMPDIR:-/tmp}/keystone-setup-cc-$$.c"
if ! "$cc" -o "${TMPDIR:-/tmp}/keystone-setup-cc-$$" "${TMPDIR:-/tmp}/keystone-setup-cc-$$.c" >/dev/null 2>&1; then
    rm -f "${TMPDIR:-/tmp}/keystone-setup-cc-$$"*
    fail "$cc cannot build a C program (C library headers missing?); on Debian: $apt_hint"
fi
rm -f "${TMPDIR:-/tmp}/keystone-setup-cc-$$"*

echo "keystone-setup: installing $keystone_req and $uwsgi_req from PyPI into $venv (1-3 minutes)"
start=$(date +%s)
rm -rf "$venv"
mkdir -p "$repo/target"
"$py" -m venv "$venv" ||
    fail "$py -m venv failed; on Debian: $apt_hint"
# A half-made venv must not pass for a ready one: remove it on failure.
if ! "$venv/bin/pip" install --quiet --progress-bar off "$keystone_req" "$uwsgi_req"; then
    rm -rf "$venv"
    fail "pip install $keystone_req $uwsgi_req failed (output above); the build of uwsgi needs: $apt_hint"
fi
works || fail "installed, but $venv/bin/keystone-manage --version or $venv/bin/uwsgi --version fails"
echo "keystone-setup: done in $(($(date +%s) - start)) s ($versions)"
