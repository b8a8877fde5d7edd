#!/usr/bin/env bash
# Soak with faults (issue 12): DURATION seconds (default 1800) of mixed traffic against two
# `wxmp serve` instances on one Redis, while the upstream fails and is slow, Redis restarts and
# one instance is killed -9. Prints a report and writes it as markdown to REPORT.
#
#   usage: bash bench/soak.sh                 (needs redis-server and python3; builds wxmp)
#   env:   DURATION=1800 RATE=100 WORKERS=8 REPORT=bench/soak-report.md BIN=… SEAL=…
#          TOKEN_LIFETIME (default DURATION/12, at least 60) PASSIVE_CURRENT_S (DURATION/6)
#          REDIS_DOWN_S=10 INSTANCE_DOWN_S=5 SLOW_S KEEP_WORK=1 (keep logs and config)
#
# The traffic driver is bench/soak_driver.py (standard library only); its docstring says what
# it sends and when the faults come. Encrypted pushes are sealed by wxmp-proto's `seal`
# example, since Python has no AES.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server is needed" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p wxmp --bin wxmp
  BIN="$PWD/target/release/wxmp"
fi
if [ -z "${SEAL:-}" ]; then
  cargo build --release -q -p wxmp-proto --example seal
  SEAL="$PWD/target/release/examples/seal"
fi
WORK=$(mktemp -d /tmp/wxmp-soak.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] && echo "logs kept in $WORK" || rm -rf "$WORK"' EXIT
export BIN SEAL WORK
export REPORT=${REPORT:-bench/soak-report.md}
python3 bench/soak_driver.py
