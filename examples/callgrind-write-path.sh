#!/bin/bash
# Instructions per value update in the write callbacks, counted by
# valgrind's callgrind (repeatable, unlike CPU time): rest's write_cb next to
# write_prometheus's callback, in one collectd fed 1000 metrics a second.
#
#   cargo build --release && examples/callgrind-write-path.sh [SECONDS] [SOURCE]
#
# SOURCE is where the values come from:
#   network   (default) collectd-tg over the network plugin, which tags
#             every value with two meta data entries (network:received,
#             network:ip_address);
#   unixsock  PUTVAL lines on the unixsock plugin's socket, from a Python
#             client: values without meta data, as collectd's own read
#             plugins dispatch them.
#
# Needs valgrind, curl, python3, collectd-core and collectd-utils. Prints the inclusive
# instruction count of each callback collectd's plugin_write called, divided
# by the number of calls; plus our pre-cache filter match (the rule the
# plugin adds to the pre-cache chain).
set -euo pipefail
secs=${1:-60}
source=${2:-network}
case "$source" in network|unixsock) ;; *) echo "SOURCE: network or unixsock" >&2; exit 1;; esac
. "$(dirname "$0")/callgrind-common.sh"
require collectd-tg
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
</Plugin>
EOF
start_collectd "$dir" "$api" --callgrind-out-file="$dir/callgrind.out"
if [ "$source" = network ]; then
    echo "collectd-tg: 1000 metrics, 1 s interval, for $secs s (collectd runs under callgrind)"
    timeout "$secs" collectd-tg -n 1000 -H 10 -p 10 -i 1 -d 127.0.0.1 -D "$udp" > /dev/null 2>&1 || true
else
    echo "unixsock PUTVAL: 1000 metrics, 1 s interval, for $secs s (collectd runs under callgrind)"
    python3 - "$dir/sock" "$secs" <<'EOP'
import socket, sys, time
sock, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rwb")
end = time.time() + secs
while time.time() < end:
    start = time.time()
    t = int(start)
    # Named like collectd-tg's metrics; one batch a second, answers read
    # after it (the socket buffers hold a batch).
    for i in range(1000):
        f.write(b'PUTVAL "host%d/plugin%d/gauge-ti%d" interval=1 %d:%d\n' % (i % 10, i % 100, i, t, i))
    f.flush()
    for _ in range(1000):
        assert f.readline().startswith(b"0 "), "PUTVAL failed"
    time.sleep(max(0.0, 1.0 - (time.time() - start)))
EOP
fi
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
