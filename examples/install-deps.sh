#!/bin/sh
# Installs what building, running and testing collectd-rest needs on Debian
# bookworm: collectd 5.12 (daemon, headers, utilities) and libclang (bindgen).
# As root it installs what is missing with apt-get; otherwise it says what to
# install and fails. Extra packages can be passed as arguments.
set -eu

packages="collectd-core collectd-dev collectd-utils libclang-dev $*"
missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "collectd-rest needs these Debian packages:$missing" >&2
        echo "install them with: sudo apt-get install$missing" >&2
        exit 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! apt-get install -y -q $missing; then
        apt-get update -q
        # shellcheck disable=SC2086
        apt-get install -y -q $missing
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo (Rust) is not installed: see https://rustup.rs" >&2
    exit 1
fi
