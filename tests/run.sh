#!/bin/sh
# Sets up a Debian bookworm machine for the tests (as root: installs what is
# missing) and runs every test: formatting, lints, unit tests and the
# black-box tests that start a real collectd with the plugin.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
# The libraries of the plugins the tests load (rrdtool, ping, write_prometheus),
# promtool (package prometheus) to check GET /metrics, curl.
"$repo/examples/install-deps.sh" librrd8 liboping0 libmicrohttpd12 libprotobuf-c1 prometheus curl
cd "$repo"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
