#!/bin/bash
# Instructions per value update in the write callbacks, counted by
# valgrind's callgrind (repeatable, unlike CPU time): rest's write_cb next to
# write_prometheus's callback, in one collectd that collectd-tg feeds over
# the network plugin (which tags every value with two meta data entries).
#
#   cargo build --release && examples/callgrind-write-path.sh [SECONDS]
#
# Needs valgrind, collectd-core and collectd-utils. Prints the inclusive
# instruction count of each callback collectd's plugin_write called, divided
# by the number of calls; plus our pre-cache filter match (the rule the
# plugin adds to the pre-cache chain).
set -euo pipefail
secs=${1:-60}
repo=$(cd "$(dirname "$0")/.." && pwd)
so=$repo/target/release/librest.so
[ -f "$so" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for t in valgrind callgrind_annotate collectd-tg /usr/sbin/collectd; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install valgrind collectd-core collectd-utils)" >&2; exit 1; }
done
dir=$(mktemp -d /tmp/rest-callgrind.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
udp=$(free_port); wp=$(free_port); api=$(free_port)
mkdir -p "$dir/plugins"
cp /usr/lib/collectd/{network,write_prometheus,logfile}.so "$dir/plugins/"
cp "$so" "$dir/plugins/rest.so"
cat > "$dir/collectd.conf" <<EOF
BaseDir "$dir"
PluginDir "$dir/plugins"
TypesDB "/usr/share/collectd/types.db"
Interval 10
LoadPlugin logfile
<Plugin logfile>
  File "$dir/collectd.log"
</Plugin>
LoadPlugin network
<Plugin network>
  Listen "127.0.0.1" "$udp"
</Plugin>
LoadPlugin write_prometheus
<Plugin write_prometheus>
  Port "$wp"
</Plugin>
LoadPlugin rest
<Plugin rest>
  Listen "127.0.0.1" "$api"
</Plugin>
EOF
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    /usr/sbin/collectd -f -C "$dir/collectd.conf" > "$dir/valgrind.txt" 2>&1 &
vg=$!
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$api/v1/health" > /dev/null && break
    sleep 1
done
echo "collectd-tg: 1000 metrics, 1 s interval, for $secs s (collectd runs under callgrind)"
timeout "$secs" collectd-tg -n 1000 -H 10 -p 10 -i 1 -d 127.0.0.1 -D "$udp" > /dev/null 2>&1 || true
kill -TERM "$vg"
wait "$vg" || true
callgrind_annotate --threshold=100 --inclusive=yes --tree=calling "$dir/callgrind.out" 2>/dev/null |
    awk '
        function report(label, line,    n, calls) {
            n = line; sub(/^ */, "", n); sub(/ .*/, "", n); gsub(",", "", n)
            calls = line; sub(/.*\(/, "", calls); sub(/x\).*/, "", calls); gsub(",", "", calls)
            if (calls > 0)
                printf "%-34s %6.0f instructions per call (%d calls)\n", label, n / calls, calls
        }
        /\*  .*plugin_write \[/ { inside = 1; next }
        /^$/ { inside = 0 }
        inside && /rest::host::write_cb \(/ { report("rest: write callback", $0) }
        inside && /write_prometheus\.so\]/ { report("write_prometheus: write callback", $0) }
        !matched && /> .*rest::host::filter::matches \(/ {
            report("rest: pre-cache chain match", $0); matched = 1
        }'
echo "callgrind output: $dir/callgrind.out"
