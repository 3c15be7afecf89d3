#!/bin/bash
# rest's share of collectd's CPU with collectd-tg flat out, sampled by perf
# from a shell (a lighter perf than the benchmark's B-sample, see below).
#
#   cargo build --release && examples/perf-share.sh [RUNS] [SECONDS]
#
# One collectd (network, unixsock, logfile, rest; Interval 1) per run;
# collectd-tg -n 10000 -H 100 -p 20 -i 0.001 (as fast as it can) sends to
# it; after 3 s, `perf record -e cpu-clock -F 999 --call-graph dwarf,16384`
# of collectd for SECONDS (default 20). A sample is rest's when any frame
# of its call chain is in rest.so. Prints, per run, collectd's samples,
# rest's share and 1 - share: collectd flat out is CPU-bound, so its ingest
# ceiling with rest is at worst 1 - share of what it is without.
#
# Why beside B-sample: run from the benchmark, perf record took 70-80 % of
# a CPU (polling its event descriptors about 1000 times a second, for a
# reason not found), where run from a shell it takes 3 % (0.58 s of CPU
# over 21 s); collectd then got 0.75 of a CPU instead of 0.98, and rest's
# share read 6.5-8.7 % there against 4.0-4.5 % here.
#
# Needs perf (linux-perf), collectd-core, collectd-utils, python3, curl.
set -euo pipefail
runs=${1:-3}
secs=${2:-20}
. "$(dirname "$0")/callgrind-common.sh"
for t in perf collectd-tg; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install linux-perf collectd-utils)" >&2; exit 1; }
done
[ -f "$so" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for run in $(seq 1 "$runs"); do
    dir=$(mktemp -d /tmp/rest-perf-share.XXXXXX)
    udp=$(free_port); api=$(free_port)
    plugins "$dir" network unixsock logfile
    cat > "$dir/collectd.conf" <<CONF
Hostname "perfhost"
FQDNLookup false
BaseDir "$dir"
PIDFile "$dir/collectd.pid"
PluginDir "$dir/plugins"
TypesDB "/usr/share/collectd/types.db"
Interval 1
Timeout 10000
WriteQueueLimitHigh 1000000
WriteQueueLimitLow 1000000
LoadPlugin logfile
<Plugin logfile>
  File "$dir/collectd.log"
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "$dir/sock"
</Plugin>
LoadPlugin network
<Plugin network>
  Listen "127.0.0.1" "$udp"
</Plugin>
LoadPlugin rest
<Plugin rest>
  Listen "127.0.0.1" "$api"
</Plugin>
CONF
    /usr/sbin/collectd -f -C "$dir/collectd.conf" > "$dir/stdout.txt" 2>&1 &
    cpid=$!
    for _ in $(seq 1 100); do [ -S "$dir/sock" ] && break; sleep 0.1; done
    [ -S "$dir/sock" ] || { echo "collectd did not start; see $dir" >&2; kill $cpid; exit 1; }
    timeout $((secs + 30)) collectd-tg -n 10000 -H 100 -p 20 -i 0.001 -d 127.0.0.1 -D "$udp" \
        > /dev/null 2>&1 &
    tg=$!
    sleep 3
    perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p $cpid \
        -o "$dir/perf.data" -- sleep "$secs" 2> "$dir/perf.txt"
    kill $tg $cpid 2>/dev/null || true
    wait $cpid 2>/dev/null || true
    perf script --no-inline -F ip,dso -i "$dir/perf.data" 2>/dev/null | python3 -c '
import sys
n = r = 0
chain = []
def end():
    global n, r, chain
    if chain:
        n += 1
        r += any(c.endswith("/rest.so)") for c in chain)
    chain = []
for line in sys.stdin:
    if line.startswith("\t"):
        chain.append(line.strip())
    else:
        end()
end()
if n == 0:
    sys.exit("perf recorded no samples")
share = r / n
print("run %s: %d samples of collectd, rest %d (%.2f %%): ceiling with rest >= %.3f of without"
      % (sys.argv[1], n, r, 100 * share, 1 - share))
' "$run"
    rm -rf "$dir"
done
