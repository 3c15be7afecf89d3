#!/bin/sh
# Installs schemathesis (the OpenAPI fuzzer, from PyPI) into
# <repo>/target/schemathesis-venv, where tests/schemathesis.rs looks for it.
# Quick (one line of output) when that venv is already there and works.
#
# Needs python3 with venv and pip. On Debian bookworm:
#   apt-get install python3 python3-venv
# Set PYTHON to use another interpreter than the python3 on PATH.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/target/schemathesis-venv"
# The major version the test's command line is written for (`st run` with
# --checks, --exclude-checks, --max-examples, --seed, --phases); its own
# dependencies float within what it declares.
st_req='schemathesis==4.*'
apt_hint='apt-get install python3 python3-venv'

# Sets $version when st runs.
works() {
    version=$("$venv/bin/st" --version 2>/dev/null)
}

if works; then
    echo "schemathesis-setup: $venv is ready ($version)"
    exit 0
fi

fail() {
    echo "schemathesis-setup: $*" >&2
    exit 1
}

py=${PYTHON:-python3}
command -v "$py" >/dev/null 2>&1 ||
    fail "$py not found; on Debian: $apt_hint"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
    fail "schemathesis 4 needs Python >= 3.9; $py is $("$py" --version 2>&1)"
"$py" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    fail "$py cannot make a venv with pip (no venv/ensurepip module); on Debian: $apt_hint"

echo "schemathesis-setup: installing $st_req from PyPI into $venv"
start=$(date +%s)
rm -rf "$venv"
mkdir -p "$repo/target"
"$py" -m venv "$venv" ||
    fail "$py -m venv failed; on Debian: $apt_hint"
# A half-made venv must not pass for a ready one: remove it on failure.
if ! "$venv/bin/pip" install --quiet --progress-bar off "$st_req"; then
    rm -rf "$venv"
    fail "pip install $st_req failed (output above)"
fi
works || fail "installed, but $venv/bin/st --version fails"
echo "schemathesis-setup: done in $(($(date +%s) - start)) s ($version)"
