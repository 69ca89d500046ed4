#!/usr/bin/env bash
# Builds the seed corpora in fuzz/corpus/<target>/ (git-ignored) with the
# project's own debug binary and OpenSSL (a test peer, never linked):
# certificates, chains, CRLs (PEM and DER), CSRs for every key type, OCSP
# requests, enrollment tokens; and copies the hand-written text seeds from
# fuzz/seeds/<target>/. Nothing generated is checked in.
#
#   bash fuzz/seed.sh           # once: skipped when fuzz/corpus/.seeded exists
#   bash fuzz/seed.sh --force   # add a fresh set of seeds
#
# SYMBOLON_BIN=/path/to/symbolon uses that binary instead of building
# target/debug/symbolon.
set -euo pipefail

FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ")"
CORPUS="$FUZZ/corpus"

if [[ -e "$CORPUS/.seeded" && "${1:-}" != "--force" ]]; then
    echo "seed: corpora already seeded ($CORPUS/.seeded); --force adds more"
    exit 0
fi

for t in gateway_config policy request_path csr ocsp_request xfcc cert_crl token; do
    mkdir -p "$CORPUS/$t"
done

# Hand-written text seeds (checked in).
for t in gateway_config policy request_path; do
    if [[ -d "$FUZZ/seeds/$t" ]]; then
        cp "$FUZZ/seeds/$t"/* "$CORPUS/$t/"
    fi
done

if ! command -v openssl >/dev/null; then
    echo "seed: openssl is missing; only the checked-in text seeds were copied" >&2
    touch "$CORPUS/.seeded"
    exit 0
fi

BIN="${SYMBOLON_BIN:-}"
if [[ -z "$BIN" ]]; then
    (cd "$ROOT" && cargo build --quiet -p symbolon)
    BIN="$ROOT/target/debug/symbolon"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# A unique suffix, so that --force adds seeds instead of overwriting them.
S="$(date +%s)-$$"
quiet() { "$@" >/dev/null 2>&1; }

# --- a CA, leaves, a revocation and CRLs ---
quiet "$BIN" ca init --dir ca --insecure-plaintext-root-key --trust-domain example.org \
    --name Seed --permit-dns .example.org --permit-ip 127.0.0.0/8 --public-url https://ca.example.org:8443
quiet "$BIN" ca issue --dir ca --spiffe-id spiffe://example.org/ns/prod/sa/web \
    --dns web.example.org --ip 127.0.0.1 --cn web --out web
quiet "$BIN" ca issue --dir ca --dns api.example.org --out api
quiet "$BIN" ca issue --dir ca --spiffe-id spiffe://example.org/gone --out gone
quiet "$BIN" ca revoke --dir ca --cert gone.crt --reason key-compromise ||
    quiet "$BIN" ca revoke --dir ca --cert gone.crt
quiet "$BIN" ca crl --dir ca --out crl.pem
quiet "$BIN" ca crl --dir ca --der --out crl.der

C="$CORPUS/cert_crl"
cp ca/root.crt "$C/seed-root-$S.pem"
cp ca/ca-bundle.pem "$C/seed-bundle-$S.pem"
cat web.crt ca/root.crt >"$C/seed-web-chain-$S.pem"          # verifies: leaf, intermediate, root
cat api.crt ca/root.crt >"$C/seed-api-chain-$S.pem"
cat gone.crt ca/root.crt crl.pem >"$C/seed-revoked-chain-$S.pem" # refused: revoked
cat crl.pem ca/intermediate.crt >"$C/seed-crl-and-issuer-$S.pem" # read_crl verifies it
cp crl.der "$C/seed-crl-$S.der"
openssl x509 -in web.crt -outform DER -out "$C/seed-web-$S.der"
openssl x509 -in ca/root.crt -outform DER -out "$C/seed-root-$S.der"

# --- CSRs: every key type, DNS / URI / IP SANs; one that asks for a CA ---
R="$CORPUS/csr"
n=0
for key in "ec -pkeyopt ec_paramgen_curve:P-256" "ec -pkeyopt ec_paramgen_curve:P-384" \
    "ed25519" "rsa -pkeyopt rsa_keygen_bits:2048"; do
    n=$((n + 1))
    # shellcheck disable=SC2086 # $key is several arguments
    openssl genpkey -algorithm $key -out k$n.pem 2>/dev/null
    openssl req -new -key k$n.pem -subj "/CN=web/O=Acme" \
        -addext "subjectAltName=DNS:web.example.org,URI:spiffe://example.org/ns/prod/sa/web,IP:127.0.0.1" \
        -outform DER -out "$R/seed-csr$n-$S.der" 2>/dev/null
done
openssl req -new -key k1.pem -subj "/CN=web" -addext "subjectAltName=DNS:web.example.org" \
    -out csr.pem 2>/dev/null
cp csr.pem "$R/seed-csr-$S.pem"
cp csr.pem "$C/seed-csr-$S.pem"
openssl req -new -key k1.pem -subj "/CN=ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "subjectAltName=DNS:ca.example.org" -outform DER -out "$R/seed-csr-ca-$S.der" 2>/dev/null

# --- OCSP requests: SHA-1 and SHA-256 CertIDs, with and without nonce, several certs ---
O="$CORPUS/ocsp_request"
openssl ocsp -issuer ca/intermediate.crt -cert web.crt -no_nonce -reqout "$O/seed-sha1-$S.der" >/dev/null 2>&1
openssl ocsp -issuer ca/intermediate.crt -cert web.crt -reqout "$O/seed-nonce-$S.der" >/dev/null 2>&1
openssl ocsp -sha256 -issuer ca/intermediate.crt -cert web.crt -cert api.crt -cert gone.crt \
    -reqout "$O/seed-sha256-three-$S.der" >/dev/null 2>&1

# --- enrollment tokens ---
"$BIN" ca token --dir ca --identity spiffe://example.org/dev --dns dev.example.org \
    2>/dev/null | head -n1 | tr -d '\n' >"$CORPUS/token/seed-token-$S"
"$BIN" ca token --dir ca --ip 127.0.0.1 2>/dev/null | head -n1 | tr -d '\n' \
    >"$CORPUS/token/seed-token-ip-$S"

# Empty seeds (a failed step) teach nothing.
find "$CORPUS" -type f -empty -delete
touch "$CORPUS/.seeded"
for t in gateway_config policy request_path csr ocsp_request xfcc cert_crl token; do
    echo "seed: $t: $(find "$CORPUS/$t" -type f | wc -l) files"
done
