#!/usr/bin/env bash
# wxmp against a do-nothing axum server, driven by wrk (a lean C client) on the same machine.
#
# Three scenarios, each the ratio of wxmp's req/s to the do-nothing server's on the same path:
#   post   safe-mode push answered by a keyword reply: verify msg_signature, decrypt, parse,
#          match, render, encrypt, sign, record the push for dedup and replay. Every request
#          a new message (own MsgId, nonce, sender).                     target ≥ 0.70
#   get    the GET handshake (signature check, echostr back), own nonce each.   target ≥ 0.90
#   token  GET /v1/apps/demo/access_token with the API key.                 target ≥ 0.85
# Each round starts wxmp afresh (memory store, upstream = `wxmp emulator`) and runs every
# scenario against both servers, alternating which goes first; the ratio reported is the
# median over rounds.
#
#   usage: bash bench/wrk.sh [post|get|token ...]      (default: all three)
# Also printed: the server's CPU time (user + system) per request, from /proc, which a busy
# machine disturbs far less than req/s.
#   env:   ROUNDS=3 DURATION=5 CONNECTIONS=32 THREADS=1 STORE=memory|sqlite
#          WXMP_BIN=path (skip the build; e.g. a build with another allocator)
# Needs wrk (Debian's wrk package: installed here when missing, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
STORE=${STORE:-memory}
SCENARIOS=${*:-post get token}

if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -qq wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
fi
cargo build --release -q -p wxmp --bin wxmp --example wrk_peer
WXMP_BIN=${WXMP_BIN:-$PWD/target/release/wxmp}
PEER=$PWD/target/release/examples/wrk_peer

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
. bench/lib.sh

API_KEY=wxmp-bench-api-key-0123456789
emu_port=$(free_port)
"$WXMP_BIN" emulator --listen "127.0.0.1:$emu_port" >"$work/emulator.log" 2>&1 &
pids+=($!)
noop_port=$(free_port)
"$PEER" noop "127.0.0.1:$noop_port" &
noop_pid=$!
pids+=($noop_pid)
wxmp_port=$(free_port)
store_toml='backend = "memory"'
[ "$STORE" = sqlite ] && store_toml="backend = \"sqlite\"
path = \"$work/wxmp.db\""
cat >"$work/wxmp.toml" <<EOF
listen = "127.0.0.1:$wxmp_port"
upstream = "http://127.0.0.1:$emu_port"
[store]
$store_toml
[api]
keys = ["$API_KEY"]
[apps.demo]
appid = "wx0123456789abcdef"
secret = "wxmp-demo-secret"
token = "pamtest"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
mode = "safe"
[apps.demo.auto_reply.keywords]
ping = "pong"
EOF
wait_http "http://127.0.0.1:$noop_port/v1/apps/demo/access_token"
wait_http "http://127.0.0.1:$emu_port/_emulator/"

start_wxmp() {
  rm -f "$work"/wxmp.db*
  RUST_LOG=warn "$WXMP_BIN" serve --config "$work/wxmp.toml" >>"$work/wxmp.log" 2>&1 &
  wxmp_pid=$!
  wait_http "http://127.0.0.1:$wxmp_port/healthz"
  curl -fs -o /dev/null -H "Authorization: Bearer $API_KEY" \
    "http://127.0.0.1:$wxmp_port/v1/apps/demo/access_token"
}
stop_wxmp() { kill "$wxmp_pid"; wait "$wxmp_pid" 2>/dev/null || true; }

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Runs wrk once; prints "rps p50_us p99_us non2xx cpu_us_per_request".
run_wrk() { # run_wrk URL_BASE SCENARIO PID
  local base=$1 scenario=$2 pid=$3 out before after
  before=$(cpu_ticks "$pid")
  case $scenario in
    post | get) out=$(REQUESTS="$work/$scenario.txt" wrk -t"$THREADS" -c"$CONNECTIONS" \
      -d"${DURATION}s" --latency -s bench/wrk/replay.lua "$base") ;;
    token) out=$(API_KEY=$API_KEY wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
      --latency -s bench/wrk/token.lua "$base/v1/apps/demo/access_token") ;;
  esac
  after=$(cpu_ticks "$pid")
  if grep -q "WARNING" <<<"$out"; then echo "bench: $scenario outlasted its prepared requests" >&2; fi
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Non-2xx/ { bad = $NF }
    /Socket errors/ { bad = bad "+sock" }
    / requests in / { n = $1 }
    END { printf "%.0f %.0f %.0f %s %.1f\n", rps, p50, p99, (bad == "" ? 0 : bad), ticks / hz * 1e6 / n }' <<<"$out"
}

# Prepared requests: enough for the fastest rate seen here (~100k req/s) for DURATION.
prepare() {
  local n=$((DURATION * 110000)) ts
  ts=$(date +%s)
  case " $SCENARIOS " in *" post "*) "$PEER" pushes "$n" "$ts" >"$work/post.txt" ;; esac
  case " $SCENARIOS " in *" get "*) "$PEER" handshakes "$n" "$ts" >"$work/get.txt" ;; esac
}

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, store $STORE, $(nproc) cores, $(date -u +%F)"
printf '%-6s %-5s %-5s %9s %9s %9s %11s  %s\n' round scen server req/s p50_us p99_us cpu_us/req non2xx
declare -A ratios
for round in $(seq "$ROUNDS"); do
  prepare
  start_wxmp
  for scenario in $SCENARIOS; do
    order="wxmp noop"; [ $((round % 2)) -eq 0 ] && order="noop wxmp"
    declare -A rps=()
    for server in $order; do
      port=$wxmp_port pid=$wxmp_pid
      [ "$server" = noop ] && port=$noop_port pid=$noop_pid
      read -r r p50 p99 bad cpu < <(run_wrk "http://127.0.0.1:$port" "$scenario" "$pid")
      rps[$server]=$r
      printf '%-6s %-5s %-5s %9s %9s %9s %11s  %s\n' "$round" "$scenario" "$server" "$r" "$p50" "$p99" "$cpu" "$bad"
    done
    ratio=$(awk -v a="${rps[wxmp]}" -v b="${rps[noop]}" 'BEGIN { printf "%.3f", a / b }')
    ratios[$scenario]="${ratios[$scenario]:-} $ratio"
    # Pushes already sent would now be retries: the next scenario run of `post` needs fresh
    # ones, and a fresh store, which the next round gives.
  done
  stop_wxmp
done
echo
for scenario in $SCENARIOS; do
  median=$(tr ' ' '\n' <<<"${ratios[$scenario]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  echo "ratio $scenario: median $median (rounds:${ratios[$scenario]})"
done
