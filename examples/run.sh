#!/bin/sh
# Builds the plugin and runs collectd in the foreground with it, on
# examples/collectd.conf, from a private directory (target/run): no system
# file is changed. The API answers on http://127.0.0.1:9196. Ctrl-C stops it.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/examples/install-deps.sh" curl

cargo build --release --manifest-path "$repo/Cargo.toml"

run="$repo/target/run"
rm -rf "$run/plugins"
mkdir -p "$run/plugins"
# collectd loads plugins from one directory and does not follow symlinks
# there: copy rest.so and the system plugins the example loads.
cp "$repo/target/release/librest.so" "$run/plugins/rest.so"
for p in $(sed -n 's/^LoadPlugin[[:space:]]*\([a-z_0-9]*\).*/\1/p' "$repo/examples/collectd.conf"); do
    [ "$p" = rest ] || cp "/usr/lib/collectd/$p.so" "$run/plugins/"
done
cat > "$run/collectd.conf" <<CONF
BaseDir "$run"
PIDFile "$run/collectd.pid"
PluginDir "$run/plugins"
Include "$repo/examples/collectd.conf"
CONF

/usr/sbin/collectd -f -C "$run/collectd.conf" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
i=0
until curl -fsS http://127.0.0.1:9196/v1/health >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        echo "collectd-rest did not come up; see the log above" >&2
        kill -TERM $pid 2>/dev/null || true
        exit 1
    fi
    sleep 0.1
done
cat <<MSG

collectd-rest is answering on http://127.0.0.1:9196 (collectd pid $pid). Try:
  curl -s http://127.0.0.1:9196/v1/health
  curl -s http://127.0.0.1:9196/v1/metrics
  curl -s 'http://127.0.0.1:9196/v1/values?plugin=load'
Ctrl-C stops collectd.

MSG
wait $pid
