#!/usr/bin/env bash
# Revocation propagation benchmark: builds the release binary, then measures
# on loopback how long after `POST /v1/revoke` the gateway closes a live
# connection of the revoked certificate and refuses its new handshakes
# (100 iterations, 10 s timeout each, under 3 minutes in all).
#
#   bash bench/run_revocation.sh [OUT.md]     (default target/bench/revocation_propagation.md)
#
# Needs python3 (standard library only). Extra arguments after OUT.md go to
# bench/revocation_propagation.py (e.g. --iterations 20, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
out="${1:-$target/bench/revocation_propagation.md}"
shift || true

cargo build --release -p symbolon
python3 bench/revocation_propagation.py --bin "$target/release/symbolon" "$@" "$out"
echo "report written to $out"
