#!/usr/bin/env bash
# Runs every fuzz target for a while; exits non-zero if any crashed,
# naming each crashing target and the artifact that reproduces it.
#
#   bash fuzz/run.sh [SECONDS]          # CI: bash fuzz/run.sh 20
#   bash fuzz/run.sh 600                # ten minutes per target
#   FUZZ_TARGETS="policy xfcc" bash fuzz/run.sh 60
#
# Steps: installs cargo-fuzz if missing (crates.io); seeds the corpora
# (fuzz/seed.sh, once); builds all targets once (`cargo +nightly fuzz
# build`); runs the targets one after another with -max_total_time.
# Corpora grow in fuzz/corpus/<target>/ and are reused by the next run.
#
# Long runs (see docs/fuzzing.md): one target in the background, output
# to a log, at most as many at once as the machine has spare cores:
#
#   cargo +nightly fuzz run policy -- -max_total_time=3600 >/tmp/fuzz-policy.log 2>&1 &
#
# Reproduce a crash: cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# Minimise it:       cargo +nightly fuzz tmin <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

SECONDS_PER_TARGET="${1:-20}"
FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL="gateway_config policy request_path csr ocsp_request xfcc cert_crl token"
TARGETS="${FUZZ_TARGETS:-$ALL}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

bash "$FUZZ/seed.sh"

cd "$FUZZ"
echo "fuzz: building all targets"
cargo +nightly fuzz build

failed=()
for t in $TARGETS; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$(mktemp)"
    echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
    # New seeds from fuzz/seeds/ are read as a second corpus directory.
    extra=()
    [[ -d "seeds/$t" ]] && extra=("seeds/$t")
    if cargo +nightly fuzz run "$t" "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^#[0-9]+\s+DONE' "$log" | sed "s/^/fuzz: $t: /" || true
    else
        artifact="$(grep -oE 'Test unit written to \S+' "$log" | tail -n1 | cut -d' ' -f5 || true)"
        grep -E 'panicked at|^(==|SUMMARY)' "$log" | head -n5 | sed "s/^/fuzz: $t: /" >&2 || true
        echo "fuzz: FAILED: $t: artifact ${artifact:-(none; see the output above)}" >&2
        echo "fuzz: reproduce: cd fuzz && cargo +nightly fuzz run $t ${artifact:-}" >&2
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
    rm -f "$log"
done

if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all targets ran ${SECONDS_PER_TARGET}s without a crash"
