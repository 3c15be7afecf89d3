#!/bin/sh
# Sets up a Debian bookworm machine for the tests (as root: installs what is
# missing) and runs every test: formatting, lints, unit tests and the
# black-box tests that start a real collectd with the plugin.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
# librrd8: the rrdtool plugin, used to observe a flush inside collectd.
"$repo/examples/install-deps.sh" librrd8 curl
cd "$repo"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
