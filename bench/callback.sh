#!/usr/bin/env bash
# Callback load, side by side with a do-nothing axum server in the same run, same client:
# safe-mode text message answered by a keyword reply, and the GET handshake. Prints the
# ratios (targets, issue #4: POST ≥ 70%, GET ≥ 85%).   usage: bash bench/callback.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p wxmp --bench load -- callback
