#!/usr/bin/env bash
# The side-by-side benchmark suite (Symbolon vs nginx, HAProxy, cfssl and the
# crypto bound), written to BENCHMARKS.md. Installs the peers from Debian's
# packages if they are missing, builds the release binaries, then runs
# bench/suite.py (about 6 minutes; --quick for a 1-minute smoke run).
#
#   bash bench/run_suite.sh [--quick] [--out FILE] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v cfssl >/dev/null || need+=(golang-cfssl)
command -v openssl >/dev/null || need+=(openssl)
command -v psql >/dev/null || need+=(postgresql-client)
if ((${#need[@]})); then
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}"
fi

cargo build --release -p symbolon
cargo build --release -p symbolon-node --example crl_scale
cargo build --release -p symbolon-bench --example bare_rustls
python3 bench/suite.py "$@"
