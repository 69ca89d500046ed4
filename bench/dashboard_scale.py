#!/usr/bin/env python3
"""Dashboard responsiveness with 100,000 certificates in the store.

Creates a CA, bulk-loads N certificate records straight into its SQLite
store (the inventory pages read records, not the DER), starts `ca serve`
(release build) and times each dashboard page over HTTPS from loopback.
Usage: bench/dashboard_scale.py [N] [OUT.md]
"""
import os, random, secrets, sqlite3, ssl, statistics, subprocess, sys, tempfile, time, urllib.request, socket

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
OUT = sys.argv[2] if len(sys.argv) > 2 else None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "symbolon")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

work = tempfile.mkdtemp(prefix="symbolon-dash-")
subprocess.run([BIN, "ca", "init", "--dir", "ca", "--insecure-plaintext-root-key", "--trust-domain", "example.org"], cwd=work, check=True, stdout=subprocess.DEVNULL)
db = sqlite3.connect(os.path.join(work, "ca", "symbolon.db"))
now = int(time.time())
rows = []
t0 = time.time()
for i in range(N):
    nb = now - random.randint(0, 30 * 86400)
    na = now + random.randint(-5 * 86400, 90 * 86400)
    revoked = random.random() < 0.05
    rows.append((secrets.token_hex(16), "O=Symbolon, CN=Symbolon Intermediate CA", "", f"spiffe://example.org/svc/{i}",
                 random.choice(["server", "client", "peer"]), nb, na, secrets.token_hex(32), b"", nb,
                 now - 3600 if revoked else None, "keyCompromise" if revoked else None))
db.executemany("INSERT INTO certificates (serial, issuer, subject, identities, profile, not_before, not_after, fingerprint, der, issued_at, revoked_at, revocation_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
db.commit(); db.close()
load = time.time() - t0

port = free_port()
serve = subprocess.Popen([BIN, "ca", "serve", "--dir", "ca", "--listen", f"127.0.0.1:{port}"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
        except OSError:
            time.sleep(0.05)
    ctx = ssl.create_default_context(cafile=os.path.join(work, "ca", "root.crt"))
    pages = [
        ("overview", "/ui/"),
        ("inventory, first page", "/ui/certificates"),
        ("inventory, page 1000", "/ui/certificates?page=1000"),
        ("inventory, search", "/ui/certificates?q=svc/77777"),
        ("inventory, sort by identity desc", "/ui/certificates?sort=identity&dir=desc"),
        ("inventory, revoked only", "/ui/certificates?status=revoked"),
        ("expiry timeline, 90 days", "/ui/expiry?days=90"),
        ("trust graph", "/ui/trust"),
        ("connection matrix", "/ui/matrix"),
        ("audit log", "/ui/audit"),
    ]
    results = []
    for name, path in pages:
        times = []
        status = None
        for _ in range(5):
            t = time.perf_counter()
            with urllib.request.urlopen(f"https://localhost:{port}{path}", context=ctx, timeout=30) as r:
                r.read(); status = r.status
            times.append((time.perf_counter() - t) * 1000)
        results.append((name, path, status, statistics.median(times), max(times)))
finally:
    serve.kill(); serve.wait()

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    f"Dashboard with {N:,} certificates in the SQLite store (loaded in {load:.1f} s), `ca serve` release build, 5 requests per page over HTTPS from loopback.",
    "",
    f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
    f"- machine: {os.cpu_count()} logical CPUs, {cpu}",
    "",
    "| page | path | status | median ms | max ms |",
    "|---|---|---:|---:|---:|",
]
for name, path, status, med, mx in results:
    lines.append(f"| {name} | `{path}` | {status} | {med:.1f} | {mx:.1f} |")
text = "\n".join(lines) + "\n"
print(text)
if OUT:
    open(OUT, "w").write(text)
