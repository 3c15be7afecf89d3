#!/bin/sh
# Runs the fuzz targets of tests/fuzz (cargo fuzz, libFuzzer) for a short
# while each, over their committed seed corpora; fails, naming the target
# and the crash artifact, if any input crashes one.
#
#   FUZZ_SECONDS    seconds per target (default 10)
#   FUZZ_TARGETS    targets to run, space- or comma-separated (default: all)
#   FUZZ_SANITIZER  none (default: fastest; the code is safe Rust) or address
#   FUZZ_NEW_CORPUS a directory to keep the inputs the run found, one
#                   subdirectory per target (default: a temporary directory,
#                   removed at the end); the committed corpora never change
#   FUZZ_ARGS       more libFuzzer options, e.g. "-fork=4" (4 processes)
#
# Installs cargo-fuzz (cargo install --locked) if it is missing. Only stable
# Rust is needed: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo fuzz
# passes for sanitizers. Longer runs and adding entries to the corpora:
# tests/fuzz/README.md.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir="$repo/tests/fuzz"
seconds=${FUZZ_SECONDS:-10}
sanitizer=${FUZZ_SANITIZER:-none}
started=$(date +%s)

# What building needs: collectd's headers and libclang (bindgen, as for the
# plugin) and a C++ compiler (libfuzzer-sys builds libFuzzer).
"$repo/examples/install-deps.sh" g++

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    t=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "== cargo-fuzz installed in $(($(date +%s) - t)) s"
fi

export RUSTC_BOOTSTRAP=1
cd "$repo"
echo "== building the fuzz targets (sanitizer $sanitizer)"
t=$(date +%s)
cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer"
echo "== built in $(($(date +%s) - t)) s"

targets=$(echo "${FUZZ_TARGETS:-}" | tr ',' ' ')
if [ -z "$targets" ]; then
    targets=$(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

if [ -n "${FUZZ_NEW_CORPUS:-}" ]; then
    work=$FUZZ_NEW_CORPUS
    mkdir -p "$work"
    keep=1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/collectd-rest-fuzz.XXXXXX")
    keep=0
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/collectd-rest-fuzz-logs.XXXXXX")
cleanup() {
    [ "$keep" = 1 ] || rm -rf "$work"
    rm -rf "$logs"
    # The targets' PluginDir/StateDir scratch directories (fuzz_support::
    # scratch_dir), of processes that have ended.
    for d in /dev/shm/collectd-rest-fuzz-[0-9]* "${TMPDIR:-/tmp}"/collectd-rest-fuzz-[0-9]*; do
        [ -d "$d" ] || continue
        pid=${d##*/collectd-rest-fuzz-}
        [ -d "/proc/${pid%%-*}" ] || rm -rf "$d"
    done
}
trap cleanup EXIT

failed=""
for target in $targets; do
    corpus="$fuzz_dir/corpus/$target"
    if [ ! -d "$corpus" ]; then
        echo "FUZZ FAILURE: $target: no target or no corpus at $corpus" >&2
        failed="$failed $target"
        continue
    fi
    dict="$fuzz_dir/dict/$target.dict"
    case $target in
        blacklist_rule | threshold | plugin_put) dict="$fuzz_dir/dict/json.dict" ;;
    esac
    dict_arg=""
    [ -f "$dict" ] && dict_arg="-dict=$dict"
    mkdir -p "$work/$target" "$fuzz_dir/artifacts/$target"
    log="$logs/$target.log"
    # New inputs go to the first directory (scratch), never into the
    # committed corpus; crash inputs go to tests/fuzz/artifacts/<target>/.
    # -timeout: one input running longer than 10 s is a hang.
    # shellcheck disable=SC2086
    if cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "$target" \
        "$work/$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 $dict_arg ${FUZZ_ARGS:-} >"$log" 2>&1; then
        # libFuzzer's last words: "Done N runs in S second(s)", or with
        # -fork the last status line "#N: cov: ... time: Ss".
        last=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)
        if [ -n "$last" ]; then
            runs=$(echo "$last" | sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/')
            secs=$(echo "$last" | sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/')
        else
            last=$(grep -E '^#[0-9]+: cov: .* time: [0-9]+s' "$log" | tail -n 1)
            runs=$(echo "$last" | sed -E 's/^#([0-9]+):.*/\1/')
            secs=$(echo "$last" | sed -E 's/.* time: ([0-9]+)s.*/\1/')
        fi
        rate="?"
        if [ -n "$runs" ] && [ "${secs:-0}" -gt 0 ]; then
            rate=$((runs / secs))
        fi
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
        echo "fuzz $target: ${runs:-?} runs in ${secs:-?} s ($rate/s), ${cov:-cov: ?}, $(find "$work/$target" -type f | wc -l) new inputs"
    else
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/^Test unit written to //')
        echo "FUZZ FAILURE: $target crashed; artifact: ${artifact:-none written}" >&2
        echo "--- the panic, if any, and the end of the log:" >&2
        grep -A 4 'panicked at' "$log" | head -n 10 >&2 || true
        grep -E 'ERROR: libFuzzer|^SUMMARY: ' "$log" >&2 || true
        sed -n '/^Error: Fuzz target exited/q;p' "$log" | tail -n 15 >&2
        echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz --sanitizer $sanitizer $target ${artifact:-ARTIFACT}" >&2
        failed="$failed $target"
    fi
done

echo "== fuzzing took $(($(date +%s) - started)) s in all"
if [ -n "$failed" ]; then
    echo "FUZZ FAILURE in:$failed" >&2
    exit 1
fi
[ "$keep" = 0 ] || echo "new inputs kept in $work"
