# Shared by examples/callgrind-*.sh (sourced, not run): the built plugin,
# the tools both need, a free port, and collectd started under callgrind.

repo=$(cd "$(dirname "$0")/.." && pwd)
so=$repo/target/release/librest.so

# require TOOL... : the release build and each tool, or exit with a hint.
require() {
    [ -f "$so" ] || { echo "build first: cargo build --release" >&2; exit 1; }
    for t in valgrind callgrind_annotate curl python3 /usr/sbin/collectd "$@"; do
        command -v "$t" >/dev/null || {
            echo "missing $t (apt-get install valgrind curl python3 collectd-core collectd-utils)" >&2
            exit 1
        }
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# plugins DIR PLUGIN... : DIR/plugins with collectd's PLUGINs and rest.so.
plugins() {
    local dir=$1
    shift
    mkdir -p "$dir/plugins"
    for p in "$@"; do cp "/usr/lib/collectd/$p.so" "$dir/plugins/"; done
    cp "$so" "$dir/plugins/rest.so"
}

# start_collectd DIR API [VALGRIND OPTION...] : collectd -f on
# DIR/collectd.conf under callgrind (pid in $vg), once its API at port API
# answers.
start_collectd() {
    local dir=$1 api=$2
    shift 2
    valgrind --tool=callgrind "$@" /usr/sbin/collectd -f -C "$dir/collectd.conf" \
        > "$dir/valgrind.txt" 2>&1 &
    vg=$!
    for _ in $(seq 1 120); do
        curl -sf "http://127.0.0.1:$api/v1/health" > /dev/null && return
        sleep 1
    done
    echo "collectd's API did not answer within 120 s; see $dir" >&2
    exit 1
}
