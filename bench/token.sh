#!/usr/bin/env bash
# Token GET latency at 64 concurrent clients, saturating and paced, next to a do-nothing axum
# server measured by the same harness (target, issue #3: p99 < 1 ms).   usage: bash bench/token.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p wxmp --bench load
