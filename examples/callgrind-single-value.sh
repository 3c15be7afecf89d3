#!/bin/bash
# Instructions per single-value read, counted by valgrind's callgrind
# (repeatable, unlike CPU time): `GET /v1/values/{id}` on one keep-alive
# HTTP connection over TCP and one over the plugin's Unix socket
# (SocketFile), against `GETVAL` on one unixsock connection, in one
# collectd.
#
#   cargo build --release && examples/callgrind-single-value.sh [REQUESTS]
#
# Needs valgrind, curl, python3 and collectd-core. Each request kind runs
# REQUESTS times (default 2000) from a Python client. Reported: the
# instructions of the threads that served each kind, divided by REQUESTS:
# for rest, the connection's own thread (TCP and Unix socket each have one,
# see src/http/conn_thread.rs) plus any runtime worker that ran our HTTP
# server's connection code (counted with TCP); for unixsock, its connection
# thread. User space only: the kernel's share (system calls,
# wake-ups) is not counted here; the benchmark's CPU figures include it.
# BusyPoll is off here (see the config below): the request's own
# instructions are counted, not the polling between requests.
set -euo pipefail
n=${1:-2000}
. "$(dirname "$0")/callgrind-common.sh"
require
dir=$(mktemp -d /tmp/rest-callgrind-sv.XXXXXX)
api=$(free_port)
plugins "$dir" unixsock logfile
cat > "$dir/collectd.conf" <<EOC
BaseDir "$dir"
PluginDir "$dir/plugins"
TypesDB "/usr/share/collectd/types.db"
Interval 10
Hostname "h"
LoadPlugin logfile
<Plugin logfile>
  File "$dir/collectd.log"
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "$dir/sock"
</Plugin>
LoadPlugin rest
<Plugin rest>
  Listen "127.0.0.1" "$api"
  SocketFile "$dir/api.sock"
  # Under valgrind, time runs some 50x slower: polling for the next request
  # would count its loop, not the request.
  BusyPoll 0
</Plugin>
EOC
start_collectd "$dir" "$api" --separate-threads=yes --callgrind-out-file="$dir/cg.out"
python3 - "$dir/sock" "$api" "$n" <<'EOP'
import http.client, socket, sys, time
sock, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rwb")
f.write(b'PUTVAL "h/test/gauge-x" interval=3600 %d:1.5\n' % int(time.time()))
f.flush()
assert f.readline().startswith(b"0 "), "PUTVAL failed"
c = http.client.HTTPConnection("127.0.0.1", port)
deadline = time.time() + 60
while True:  # until the write thread has stored the value
    c.request("GET", "/v1/values/h/test/gauge-x")
    r = c.getresponse()
    r.read()
    if r.status == 200:
        break
    assert time.time() < deadline, "the value never reached the API"
    time.sleep(0.1)
for _ in range(n):
    f.write(b'GETVAL "h/test/gauge-x"\n')
    f.flush()
    count = int(f.readline().split()[0])
    assert count == 1, "GETVAL failed"
    f.readline()
for _ in range(n):
    c.request("GET", "/v1/values/h/test/gauge-x")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
class UnixHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock.rsplit("/", 1)[0] + "/api.sock")
u = UnixHTTPConnection("localhost")
for _ in range(n):
    u.request("GET", "/v1/values/h/test/gauge-x")
    r = u.getresponse()
    r.read()
    assert r.status == 200, r.status
EOP
kill -TERM "$vg"
wait "$vg" || true
python3 - "$dir" "$n" <<'EOP'
import glob, subprocess, sys
d, n = sys.argv[1], int(sys.argv[2])
rest = unix = unixsock = 0
conn_threads = []
files = sorted(glob.glob(d + "/cg.out-*"), key=lambda f: int(f.rsplit("-", 1)[1]))
for f in files:
    out = subprocess.run(["callgrind_annotate", f], capture_output=True, text=True).stdout
    total = next((int(l.split()[0].replace(",", "")) for l in out.splitlines()
                  if l.strip().endswith("PROGRAM TOTALS")), 0)
    if "conn_thread::ThreadIo" in out:
        conn_threads.append(total)
    elif "rest::http::server" in out and "Dispatcher" in out:
        rest += total  # the runtime's workers, if they served any of it
    elif "unixsock.so" in out and total > unixsock:
        unixsock = total  # the busiest unixsock thread: the connection's
# Connection threads in the order they started: the TCP connection opened
# first and stays open, so its thread starts before the SocketFile one
# (the linker folds TcpStream's and UnixStream's reads into one function,
# so the symbols cannot tell them apart). Threads that served only the
# start-up probe are left out.
busy = [t for t in conn_threads if t > n * 1000]
assert len(busy) == 2, f"expected 2 busy connection threads, found {busy}"
rest += busy[0]
unix += busy[1]
print(f"rest GET /v1/values/{{id}}   {rest / n:8.0f} instructions per request (TCP)")
print(f"rest the same on SocketFile {unix / n:8.0f} instructions per request")
print(f"unixsock GETVAL             {unixsock / n:8.0f} instructions per request")
print(f"ratio rest / GETVAL         {rest / max(unixsock, 1):8.2f} (TCP), "
      f"{unix / max(unixsock, 1):.2f} (SocketFile)")
EOP
echo "callgrind output: $dir"
