#!/bin/sh
# Sets up a Debian bookworm machine for the tests (as root: installs what is
# missing) and runs every test: formatting, lints, unit tests, the black-box
# tests that start a real collectd with the plugin (and a real Keystone on
# loopback for the Keystone tests, schemathesis for the OpenAPI document),
# then every fuzz target for FUZZ_SECONDS (default 10) each.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
# The libraries of the plugins the tests load (rrdtool, ping, write_prometheus,
# python),
# promtool (package prometheus) to check GET /metrics, curl, openssl (test
# certificates) and what tests/keystone-setup.sh needs to build Keystone's venv.
"$repo/examples/install-deps.sh" librrd8 liboping0 libmicrohttpd12 libprotobuf-c1 \
    libpython3.11 prometheus curl openssl python3 python3-venv python3-dev gcc libc6-dev
"$repo/tests/keystone-setup.sh"
"$repo/tests/schemathesis-setup.sh"
cd "$repo"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
"$repo/tests/fuzz.sh"
