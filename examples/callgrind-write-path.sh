#!/bin/bash
# Instructions per value update in the write callbacks, counted by
# valgrind's callgrind (repeatable, unlike CPU time): rest's write_cb next to
# write_prometheus's callback, in one collectd fed 1000 values a second.
#
#   cargo build --release && examples/callgrind-write-path.sh [SECONDS] [SOURCE] [METRICS]
#
# SOURCE is where the values come from:
#   network   (default) collectd-tg over the network plugin, which tags
#             every value with two meta data entries (network:received,
#             network:ip_address);
#   unixsock  PUTVAL lines on the unixsock plugin's socket, from a Python
#             client: values without meta data, as collectd's own read
#             plugins dispatch them.
# METRICS (default 1000, a multiple of 1000) is how many metrics the values
# go to: each is updated every METRICS/1000 seconds. At 100000 use unixsock:
# collectd under callgrind handles a few hundred values a second, so the
# kernel drops most of collectd-tg's datagrams and the last metrics take
# hours to arrive, where the unixsock client waits for each answer.
#
# The count covers updates only, in the steady state: once every metric
# exists (the API lists them all), the counters are zeroed (callgrind_control
# -z) and SECONDS of updates are counted, with history rings that do not
# grow (HistorySize 8, below). A new metric's cost is a figure of its own
# (the benchmark's "new metric").
#
# Needs valgrind, curl, python3, collectd-core and collectd-utils. Prints the inclusive
# instruction count of each callback collectd's plugin_write called, divided
# by the number of calls; plus our pre-cache filter match (the rule the
# plugin adds to the pre-cache chain).
set -euo pipefail
secs=${1:-60}
source=${2:-network}
metrics=${3:-1000}
case "$source" in network|unixsock) ;; *) echo "SOURCE: network or unixsock" >&2; exit 1;; esac
case "$metrics" in *[!0-9]*|"") metrics=0 ;; esac
if [ "$metrics" -lt 1000 ] || [ $((metrics % 1000)) -ne 0 ]; then
    echo "METRICS: a multiple of 1000" >&2
    exit 1
fi
interval=$((metrics / 1000))
. "$(dirname "$0")/callgrind-common.sh"
require collectd-tg callgrind_control
dir=$(mktemp -d /tmp/rest-callgrind.XXXXXX)
udp=$(free_port); wp=$(free_port); api=$(free_port)
plugins "$dir" network unixsock write_prometheus logfile
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
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "$dir/sock"
</Plugin>
LoadPlugin write_prometheus
<Plugin write_prometheus>
  Port "$wp"
</Plugin>
LoadPlugin rest
<Plugin rest>
  Listen "127.0.0.1" "$api"
  # A history ring starts with room for 8 samples and grows (a few
  # reallocations per metric in its first HistorySize updates; 18-103
  # instructions per value over the first minutes at the default 120).
  # A daemon that has run for HistorySize intervals no longer grows them:
  # rings that never grow count the steady state.
  HistorySize 8
</Plugin>
EOF
# CALLGRIND_OPTS: more valgrind options (e.g. --cache-sim=yes).
# shellcheck disable=SC2086
start_collectd "$dir" "$api" --callgrind-out-file="$dir/callgrind.out" ${CALLGRIND_OPTS:-}
if [ "$source" = network ]; then
    echo "collectd-tg: $metrics metrics, every $interval s (collectd runs under callgrind)"
    collectd-tg -n "$metrics" -H $((metrics / 100)) -p 10 -i "$interval" -d 127.0.0.1 -D "$udp" \
        > /dev/null 2>&1 &
else
    echo "unixsock PUTVAL: $metrics metrics, 1000 a second (collectd runs under callgrind)"
    python3 - "$dir/sock" "$metrics" <<'EOP' &
import socket, sys, time
sock, metrics = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rwb")
first = 0
while True:
    start = time.time()
    t = int(start)
    # Named like collectd-tg's metrics; 1000 a second, answers read after
    # them (the socket buffers hold 1000).
    for i in range(first, first + 1000):
        f.write(b'PUTVAL "host%d/plugin%d/gauge-ti%d" interval=%d %d:%d\n'
                % (i % (metrics // 100), i % 100, i, metrics // 1000, t, i))
    f.flush()
    for _ in range(1000):
        assert f.readline().startswith(b"0 "), "PUTVAL failed"
    first = (first + 1000) % metrics
    time.sleep(max(0.0, 1.0 - (time.time() - start)))
EOP
fi
load=$!
count_metrics() {
    curl -sf "http://127.0.0.1:$api/v1/metrics" |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)["metrics"]))' 2>/dev/null ||
        echo 0
}
# Listing 100k metrics under callgrind takes seconds: poll less often then.
pause=$(( interval > 10 ? 10 : 1 ))
deadline=$(( $(date +%s) + interval * 20 + 120 ))
until [ "$(count_metrics)" -ge "$metrics" ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "the API did not list $metrics metrics in time; see $dir" >&2
        kill "$load" "$vg" 2>/dev/null || true
        exit 1
    fi
    sleep "$pause"
done
echo "all $metrics metrics exist; counting $secs s of updates"
callgrind_control -z "$vg" > /dev/null 2>&1
sleep "$secs"
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
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
