#!/usr/bin/env bash
# Idle resident memory of `wxmp serve --dev` (the in-process emulator included), after it
# has fetched its first token and served a few requests. Target (issue #3): < 30 MB.
#   usage: bash bench/rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
cargo build --release -q -p wxmp
bin="$PWD/target/release/wxmp"
work=$(mktemp -d)
port=$(free_port)
(cd "$work" && exec "$bin" serve --dev --listen "127.0.0.1:$port" >"$work/out.log" 2>&1) &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
wait_http "http://127.0.0.1:$port/healthz"
key="wxmp-dev-api-key-0123456789"
for _ in $(seq 1 20); do
  curl -fsS -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/apps/demo/access_token" >/dev/null
done
sleep 3
# The server is the child of the subshell's exec, so $pid is wxmp itself.
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
echo "idle RSS: $((rss_kb / 1024)) MiB ($rss_kb kB); peak: $((hwm_kb / 1024)) MiB ($hwm_kb kB)"
if [ "$rss_kb" -lt $((30 * 1024)) ]; then echo "target < 30 MB: met"; else echo "target < 30 MB: NOT met"; fi
