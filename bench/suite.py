#!/usr/bin/env python3
"""The side-by-side benchmark suite: Symbolon against nginx, HAProxy, cfssl
and the crypto bound, in one run on one machine, written as BENCHMARKS.md.

Everything runs on loopback in a temporary directory. The load generator
is `symbolon bench` for every server, so all sides see the same client.
Server cost is CPU time of the server's processes (utime + stime from
/proc/PID/stat, summed over nginx's and HAProxy's workers), not wall time:
the load generator shares the machine's CPUs with the server.

Usage: bench/suite.py [--bin target/release/symbolon] [--quick] [--out BENCHMARKS.md]
Run it through bench/run_suite.sh, which installs the peers and builds.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")
TD = "example.org"
CLIENT_ID = f"spiffe://{TD}/bench/client"


# --- processes and measurements ---


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, proc=None, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout}s")


def pids_of(root_pid):
    """The process and all its descendants (nginx master + workers)."""
    out, todo = [], [root_pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = open(f"/proc/{p}/task/{p}/children").read().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def cpu_seconds(root_pid):
    total = 0
    for p in pids_of(root_pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rss_bytes(root_pid):
    total = 0
    for p in pids_of(root_pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class Server:
    """A server process; `root_pid` is the one whose tree is measured."""

    def __init__(self, name, argv, port, cwd, log, pidfile=None):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=log)
        wait_port(port, name, None if pidfile else self.proc)
        self.root_pid = self.proc.pid
        if pidfile:
            # nginx and haproxy daemonise off; the pid file names the master.
            deadline = time.monotonic() + 10
            while not os.path.exists(pidfile) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.root_pid = int(open(pidfile).read().split()[0])

    def stop(self):
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def run(argv, cwd, timeout=600, check=True):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def bench(sym, cwd, args, timeout=600):
    """`symbolon bench ARGS --json -q` → report (exit 1 = some failures, still a report)."""
    r = subprocess.run([sym, "bench", *args, "--json", "-q"], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode not in (0, 1) or not r.stdout.strip():
        raise SystemExit(f"symbolon bench {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return json.loads(r.stdout)


def measured(server, fn):
    """Runs fn() and returns (its result, CPU seconds the server used meanwhile)."""
    c0 = cpu_seconds(server.root_pid)
    out = fn()
    return out, cpu_seconds(server.root_pid) - c0


# --- setup ---


def make_pki(sym, d):
    run([sym, "ca", "init", "--dir", "ca", "--insecure-plaintext-root-key",
         "--trust-domain", TD], d)
    run([sym, "ca", "issue", "--dir", "ca", "--dns", "localhost", "--ip", "127.0.0.1",
         "--profile", "server", "--out", "gw"], d)
    run([sym, "ca", "issue", "--dir", "ca", "--spiffe-id", CLIENT_ID, "--out", "client"], d)
    # HAProxy wants the chain and the key in one file.
    with open(os.path.join(d, "gw-haproxy.pem"), "w") as f:
        f.write(open(os.path.join(d, "gw.crt")).read())
        f.write(open(os.path.join(d, "gw.key")).read())


BODY_1K = "x" * 1024


def backend_conf(d, port):
    return f"""
worker_processes 1;
daemon off;
pid {d}/backend.pid;
error_log {d}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{BODY_1K}"; }}
    }}
}}
"""


def nginx_conf(d, port, backend):
    return f"""
worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/gw.crt;
        ssl_certificate_key {d}/gw.key;
        ssl_client_certificate {d}/ca/root.crt;
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:20m;
        ssl_session_tickets on;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Client-Subject $ssl_client_s_dn;
        }}
    }}
}}
"""


def haproxy_conf(d, port, backend):
    return f"""
global
    nbthread 2
    maxconn 8000
    pidfile {d}/haproxy.pid
    tune.ssl.default-dh-param 2048
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend mtls
    bind 127.0.0.1:{port} ssl crt {d}/gw-haproxy.pem ca-file {d}/ca/root.crt verify required ssl-min-ver TLSv1.2
    http-request set-header X-Client-Subject %{{+Q}}[ssl_c_s_dn]
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:{backend}
"""


def gateway_conf(port, backend, metrics):
    return f"""[server]
listen = "127.0.0.1:{port}"
cert = "gw.crt"
key = "gw.key"
client_ca = "ca/root.crt"
mode = "strict"
handshake_timeout = "10s"
max_connections = 20000

[upstream]
address = "127.0.0.1:{backend}"
protocol = "http"

[[policy.rule]]
name = "bench-client"
effect = "allow"
spiffe_id = ["{CLIENT_ID}"]

[metrics]
listen = "127.0.0.1:{metrics}"
"""


def start_servers(sym, d, logs):
    servers = {}
    bport = free_port()
    with open(os.path.join(d, "backend.conf"), "w") as f:
        f.write(backend_conf(d, bport))
    servers["backend"] = Server("backend nginx", ["nginx", "-c", f"{d}/backend.conf", "-p", d],
                                bport, d, logs, pidfile=f"{d}/backend.pid")
    gport = free_port()
    with open(os.path.join(d, "gw.toml"), "w") as f:
        f.write(gateway_conf(gport, bport, free_port()))
    servers["symbolon"] = Server("symbolon gateway", [sym, "gateway", "--config", "gw.toml"],
                                 gport, d, logs)
    nport = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(nginx_conf(d, nport, bport))
    servers["nginx"] = Server("nginx", ["nginx", "-c", f"{d}/nginx.conf", "-p", d],
                              nport, d, logs, pidfile=f"{d}/nginx.pid")
    hport = free_port()
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(haproxy_conf(d, hport, bport))
    servers["haproxy"] = Server("HAProxy", ["haproxy", "-db", "-f", f"{d}/haproxy.cfg"],
                                hport, d, logs)
    rport = free_port()
    servers["rustls"] = Server("bare rustls", [BARE, "127.0.0.1:%d" % rport, "gw.crt", "gw.key",
                                               "ca/root.crt"], rport, d, logs)
    return servers


BARE = os.path.join(ROOT, "target/release/examples/bare_rustls")
CLIENT = ["--cert", "client.crt", "--key", "client.key", "--trust", "ca/root.crt",
          "--server-name", "localhost"]
PROXIES = ["symbolon", "nginx", "haproxy"]
LABEL = {"symbolon": "Symbolon gateway", "nginx": "nginx", "haproxy": "HAProxy",
         "backend": "backend direct (no TLS)", "rustls": "bare rustls (reference)"}


# --- the benchmarks ---


def crypto_bound(sym, d, per_op):
    return json.loads(run([sym, "bench", "crypto", "--json", "--time", per_op], d).stdout)


def handshakes(sym, d, servers, duration, concurrency):
    rows = []
    for name in PROXIES + ["rustls"]:
        s = servers[name]
        for mode in ["full", "resumed"]:
            args = ["handshake", "--target", f"127.0.0.1:{s.port}", *CLIENT,
                    "--concurrency", str(concurrency), "--duration", duration]
            if mode == "resumed":
                args.append("--resume")
            rep, cpu = measured(s, lambda: bench(sym, d, args))
            rows.append({"server": name, "mode": mode, "report": rep, "cpu_s": cpu,
                         "per_cpu_s": rep["completed"] / cpu if cpu > 0 else float("nan")})
    return rows


def http_latency(sym, d, servers, rate, duration, connections):
    rows = []
    targets = [("backend", f"http://127.0.0.1:{servers['backend'].port}/")]
    targets += [(n, f"https://localhost:{servers[n].port}/") for n in PROXIES]
    for name, url in targets:
        s = servers[name]
        args = ["http", "--target", url, "--rate", str(rate), "--duration", duration,
                "--connections", str(connections), "--body-size", "1KiB"]
        if url.startswith("https"):
            args += CLIENT
        rep, cpu = measured(s, lambda: bench(sym, d, args))
        rows.append({"server": name, "report": rep, "cpu_s": cpu})
    return rows


def hold_connections(port, n):
    """Opens n mTLS connections (handshake done, no request) and returns them."""
    ctx = ssl.create_default_context(cafile="ca/root.crt")
    ctx.load_cert_chain("client.crt", "client.key")
    conns = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        c = ctx.wrap_socket(raw, server_hostname="localhost")
        conns.append(c)
    # TLS 1.3: the server judges the client certificate after the client's
    # handshake is done; a short read with a timeout surfaces a refusal.
    for c in conns[:5]:
        c.settimeout(0.2)
        try:
            if c.recv(1) == b"":
                raise SystemExit("the server closed a held connection")
        except (socket.timeout, ssl.SSLWantReadError):
            pass
    return conns


def memory(servers, n, d):
    rows = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 100)), hard))
    cwd = os.getcwd()
    os.chdir(d)
    try:
        for name in PROXIES:
            s = servers[name]
            idle = rss_bytes(s.root_pid)
            conns = hold_connections(s.port, n)
            time.sleep(1.0)
            held = rss_bytes(s.root_pid)
            for c in conns:
                c.close()
            rows.append({"server": name, "idle": idle, "held": held,
                         "per_conn": (held - idle) / n})
            time.sleep(1.0)
    finally:
        os.chdir(cwd)
    return rows


def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


def issuance(sym, d, count_local, count_api, logs):
    rows = []
    ident = f"spiffe://{TD}/bench/issued/{{n}}"
    db = f"symbolon_bench_{os.getpid()}"
    pg = f"postgres://postgres@127.0.0.1:5432/{db}"
    have_pg = shutil.which("psql") is not None
    if have_pg:
        psql(f"DROP DATABASE IF EXISTS {db}")
        psql(f"CREATE DATABASE {db}")
    try:
        stores = [("SQLite", [])] + ([("PostgreSQL", ["--database", pg])] if have_pg else [])
        # The same on tmpfs, where a commit does not wait for a disk: what
        # the CPU allows, to tell disk latency from our own cost.
        if os.path.isdir("/dev/shm"):
            shm = tempfile.mkdtemp(prefix="symbolon-suite-", dir="/dev/shm")
            try:
                run([sym, "ca", "init", "--dir", f"{shm}/ca", "--insecure-plaintext-root-key",
                     "--trust-domain", TD], d)
                rep = bench(sym, d, ["issue", "--dir", f"{shm}/ca", "--identity", ident,
                                     "--count", str(count_local), "--concurrency", "16"])
                rows.append({"how": "in process", "store": "SQLite on tmpfs (no disk flush)",
                             "report": rep})
            finally:
                shutil.rmtree(shm, ignore_errors=True)
        for i, (store, extra) in enumerate(stores):
            cadir = f"issue-{i}"
            run([sym, "ca", "init", "--dir", cadir, "--insecure-plaintext-root-key",
                 "--trust-domain", TD], d)
            rep = bench(sym, d, ["issue", "--dir", cadir, *extra, "--identity", ident,
                                 "--count", str(count_local), "--concurrency", "16"])
            rows.append({"how": "in process", "store": store, "report": rep})
            # Over the API: `ca serve` on the same kind of store, fresh CA.
            api_dir = f"issue-api-{i}"
            run([sym, "ca", "init", "--dir", api_dir, "--insecure-plaintext-root-key",
                 "--trust-domain", TD], d)
            if extra:
                psql(f"DROP DATABASE IF EXISTS {db}")
                psql(f"CREATE DATABASE {db}")
            # The admin certificate must be in the store `ca serve` uses.
            run([sym, "ca", "issue", "--dir", api_dir, *extra, "--spiffe-id",
                 f"spiffe://{TD}/admin", "--out", f"admin-{i}"], d)
            port = free_port()
            srv = Server(f"ca serve ({store})",
                         [sym, "ca", "serve", "--dir", api_dir, *extra, "--listen",
                          f"127.0.0.1:{port}"], port, d, logs)
            try:
                args = ["issue", "--ca", f"https://localhost:{port}", "--cert", f"admin-{i}.crt",
                        "--key", f"admin-{i}.key", "--trust", f"{api_dir}/root.crt",
                        "--identity", ident, "--count", str(count_api), "--concurrency", "16"]
                rep, cpu = measured(srv, lambda: bench(sym, d, args))
                rows.append({"how": "over the API (HTTPS, token + CSR)", "store": store,
                             "report": rep, "cpu_s": cpu})
            finally:
                srv.stop()
    finally:
        if have_pg:
            psql(f"DROP DATABASE IF EXISTS {db}")
    # cfssl serve: its own P-256 CA, the same kind of CSRs, plain HTTP.
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "cfssl-ca-key.pem", "-out", "cfssl-ca.pem", "-subj",
         "/CN=cfssl bench CA", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    with open(os.path.join(d, "cfssl.json"), "w") as f:
        json.dump({"signing": {"default": {"expiry": "24h", "usages": [
            "digital signature", "client auth", "server auth"]}}}, f)
    port = free_port()
    srv = Server("cfssl serve", ["cfssl", "serve", "-address", "127.0.0.1", "-port", str(port),
                                 "-ca", "cfssl-ca.pem", "-ca-key", "cfssl-ca-key.pem",
                                 "-config", "cfssl.json", "-loglevel", "2"], port, d, logs)
    try:
        args = ["issue", "--ca", f"http://127.0.0.1:{port}", "--api", "cfssl",
                "--identity", ident, "--count", str(count_api), "--concurrency", "16"]
        rep, cpu = measured(srv, lambda: bench(sym, d, args))
        rows.append({"how": "cfssl serve (HTTP, CSR; records nothing)", "store": "none",
                     "report": rep, "cpu_s": cpu})
    finally:
        srv.stop()
    return rows


# --- report ---


def machine():
    cpu = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 1024 / 1024
    def ver(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:
            return "not found"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": mem,
        "kernel": platform.release(),
        "nginx": ver(["nginx", "-v"]),
        "haproxy": ver(["haproxy", "-v"]),
        "cfssl": " ".join(ver(["cfssl", "version"]).split()[:2]),
        "openssl": ver(["openssl", "version"]),
        "postgres": ver(["psql", "--version"]),
    }


def commit():
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return c + (" (with uncommitted changes)" if dirty else "")
    except Exception:
        return "unknown"


def f0(x):
    return f"{x:,.0f}"


def f1(x):
    return f"{x:,.1f}"


def ms(us):
    return f"{us / 1000:.2f}"


def lat(rep, key):
    l = rep.get("latency_us") or {}
    return l.get(key, float("nan"))


def verdict(ok):
    return "**met**" if ok else "**missed**"


def write_report(out, ctx):
    m, cb, hs, ht, mem, iss = (ctx[k] for k in ["machine", "crypto", "handshakes", "http",
                                                  "memory", "issuance"])
    p256 = next(c for c in cb if c["key_type"] == "ecdsa-p256")
    bound = p256["handshakes_per_cpu_s"]
    hsd = {(r["server"], r["mode"]): r for r in hs}
    sym_full = hsd[("symbolon", "full")]["per_cpu_s"]
    sym_res = hsd[("symbolon", "resumed")]["per_cpu_s"]
    ngx_full = hsd[("nginx", "full")]["per_cpu_s"]
    htd = {r["server"]: r for r in ht}
    direct = htd["backend"]["report"]
    gw = htd["symbolon"]
    added_p99 = lat(gw["report"], "p99") - lat(direct, "p99")
    cpu_per_1k = gw["cpu_s"] / (gw["report"]["completed"] / 1000)
    memd = {r["server"]: r for r in mem}
    issd = {(r["how"].split(" ")[0], r["store"]): r for r in iss}
    local_sqlite = issd[("in", "SQLite")]["report"]["rate_per_s"]
    api_sqlite = issd[("over", "SQLite")]["report"]["rate_per_s"]
    cfssl = issd[("cfssl", "none")]["report"]["rate_per_s"]

    goals = [
        ("Full mTLS handshakes per server CPU-second ≥ 80 % of the crypto bound (ECDSA P-256)",
         f"{f0(sym_full)} = {sym_full / bound * 100:.0f} % of {f0(bound)}", sym_full >= 0.8 * bound),
        ("… and ≥ 2× nginx's", f"{sym_full / ngx_full:.2f}× nginx ({f0(ngx_full)})",
         sym_full >= 2 * ngx_full),
        ("Resumed handshakes ≥ 2.5× full ones (per server CPU-second)",
         f"{sym_res / sym_full:.2f}× ({f0(sym_res)} vs {f0(sym_full)})", sym_res >= 2.5 * sym_full),
        ("p99 added latency ≤ 150 µs at 1,000 req/s",
         f"{added_p99:,.0f} µs (p99 {ms(lat(gw['report'], 'p99'))} ms through the gateway, "
         f"{ms(lat(direct, 'p99'))} ms direct)", added_p99 <= 150),
        ("≤ 0.05 CPU-seconds per 1,000 requests", f"{cpu_per_1k:.3f}", cpu_per_1k <= 0.05),
        ("Idle RSS ≤ 20 MB", f"{memd['symbolon']['idle'] / 1e6:.1f} MB",
         memd["symbolon"]["idle"] <= 20e6),
        ("≤ 32 KiB per idle connection", f"{memd['symbolon']['per_conn'] / 1024:.1f} KiB",
         memd["symbolon"]["per_conn"] <= 32 * 1024),
        ("Issuance ≥ 5,000 certificates/s durable in process on SQLite",
         f"{f0(local_sqlite)}/s", local_sqlite >= 5000),
        ("Issuance over HTTP ≥ 10× cfssl", f"{api_sqlite / cfssl:.2f}× ({f0(api_sqlite)}/s vs "
         f"{f0(cfssl)}/s)", api_sqlite >= 10 * cfssl),
    ]

    L = []
    w = L.append
    w("# Benchmarks\n")
    w("Generated by `bash bench/run_suite.sh` (which runs `bench/suite.py`): every number below "
      "comes from **one run** on one machine, all sides measured in that run with the same load "
      "generator (`symbolon bench`). The machine is a shared 2-vCPU VM: read ratios, not absolute "
      "figures, and rerun both sides before comparing anything.\n")
    w("| | |\n|---|---|")
    w(f"| date | {ctx['date']} |")
    w(f"| machine | {m['cpus']} logical CPUs, {m['cpu']}, {m['mem_gib']:.1f} GiB RAM, "
      f"Linux {m['kernel']} |")
    w(f"| symbolon | commit {ctx['commit']}, release build |")
    w(f"| peers | {m['nginx']}; {m['haproxy']}; cfssl {m['cfssl']}; {m['openssl']}; "
      f"{m['postgres']} |")
    w(f"| run | `{ctx['argv']}`, {ctx['elapsed']:.0f} s in all |")
    w("")
    w("## Goals\n")
    w("| goal | this run | |\n|---|---|---|")
    for g, v, ok in goals:
        w(f"| {g} | {v} | {verdict(ok)} |")
    w("")
    w(open(os.path.join(HERE, "NOTES.md")).read().strip() + "\n")

    w("## 1. Crypto bound\n")
    w("The server's unavoidable crypto in one full TLS 1.3 mTLS handshake: one signature "
      "(CertificateVerify), two verifications (the client's CertificateVerify and its leaf's "
      "signature by the issuer) and one X25519 exchange, each timed in a loop by this thread's "
      f"CPU time with aws-lc-rs (the gateway's provider). Command: `symbolon bench crypto --time "
      f"{ctx['crypto_time']}`.\n")
    w("| key type | sign µs | verify µs | X25519 µs | handshake µs | bound: handshakes / CPU-s |")
    w("|---|---:|---:|---:|---:|---:|")
    for c in cb:
        w(f"| {c['key_type']} | {c['sign_us']:.1f} | {c['verify_us']:.1f} | {c['x25519_us']:.1f} "
          f"| {c['handshake_us']:.1f} | {f0(c['handshakes_per_cpu_s'])} |")
    w("")

    w("## 2. mTLS handshakes per server CPU-second\n")
    w(f"Each server terminates mTLS with the same ECDSA P-256 certificate chain and trusts the "
      f"same root; the client presents a P-256 leaf + intermediate. Command per row: `symbolon "
      f"bench handshake --target 127.0.0.1:PORT --cert client.crt --key client.key --trust "
      f"ca/root.crt --server-name localhost --concurrency {ctx['concurrency']} --duration "
      f"{ctx['duration']} [--resume]`. A handshake counts once the server has accepted the client "
      f"certificate (the client sends close_notify and reads to the server's close). CPU is the "
      f"server's utime + stime over the run (all nginx workers, all HAProxy threads).\n")
    w("| server | mode | handshakes | failed | server CPU s | **handshakes / server CPU-s** "
      "| vs crypto bound | vs nginx | wall rate /s | p50 ms | p99 ms |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in hs:
        rep = r["report"]
        ref = hsd[("nginx", r["mode"])]["per_cpu_s"]
        w(f"| {LABEL[r['server']]} | {r['mode']} | {f0(rep['completed'])} | {rep['failed']} | "
          f"{r['cpu_s']:.2f} | **{f0(r['per_cpu_s'])}** | {r['per_cpu_s'] / bound * 100:.0f} % | "
          f"{r['per_cpu_s'] / ref:.2f}× | {f0(rep['rate_per_s'])} | {ms(lat(rep, 'p50'))} | "
          f"{ms(lat(rep, 'p99'))} |")
    for r in hs:
        if r["report"]["failed"]:
            w(f"\n{LABEL[r['server']]} {r['mode']}: failures {json.dumps(r['report']['errors'])}")
    res_counts = ", ".join(
        f"{LABEL[s]} {hsd[(s, 'resumed')]['report']['results'].get('resumed', 0):,} of "
        f"{hsd[(s, 'resumed')]['report']['completed']:,}" for s in PROXIES)
    w(f"\nHandshakes that really resumed in the resumed runs: {res_counts}.\n")
    bare = hsd.get(("rustls", "full"))
    if bare:
        w(f"The bare rustls reference (tokio + rustls with its own WebPKI verifier, no policy, no "
          f"HTTP; `crates/bench/examples/bare_rustls.rs`) is the ceiling for any rustls server on "
          f"this machine, kernel and runtime included; it checks the client's chain on every "
          f"handshake. The gateway reaches {sym_full / bare['per_cpu_s']:.2f}× its full "
          f"handshakes per CPU-second.\n")

    w("## 3. Added latency of HTTP keep-alive requests\n")
    w(f"Open loop at {ctx['rate']:,} requests/s for {ctx['duration']}, spread over "
      f"{ctx['connections']} keep-alive connections opened before the clock starts; 1 KiB POST "
      f"bodies, 1 KiB answers from an nginx backend on loopback. Open loop: a request that "
      f"waited behind a slow response counts from when it was due, others from when they were "
      f"sent (the generator's timer fires up to 1 ms late; that is not the server's). Command: `symbolon bench http --target URL --rate {ctx['rate']} "
      f"--connections {ctx['connections']} --duration {ctx['duration']} --body-size 1KiB` (plus "
      f"the client certificate for https). Added = this row minus the direct row. CPU is the "
      f"proxy's own.\n")
    w("| path | requests | failed | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 µs | "
      "added p99 µs | proxy CPU-s per 1,000 req |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in ht:
        rep = r["report"]
        direct_row = r["server"] == "backend"
        add50 = "—" if direct_row else f"{lat(rep, 'p50') - lat(direct, 'p50'):,.0f}"
        add99 = "—" if direct_row else f"{lat(rep, 'p99') - lat(direct, 'p99'):,.0f}"
        cpu = "—" if direct_row else f"{r['cpu_s'] / max(rep['completed'], 1) * 1000:.3f}"
        w(f"| {LABEL[r['server']]} | {f0(rep['completed'])} | {rep['failed']} | "
          f"{ms(lat(rep, 'p50'))} | {ms(lat(rep, 'p90'))} | {ms(lat(rep, 'p99'))} | "
          f"{ms(lat(rep, 'p999'))} | {add50} | {add99} | {cpu} |")
    w("")

    w("## 4. Memory\n")
    w(f"RSS (`VmRSS`, summed over each server's processes) when idle, then holding "
      f"{ctx['held']:,} established mTLS connections (handshake done, no request) opened with "
      f"Python's `ssl`. nginx runs a master and two workers, so its idle figure counts three "
      f"processes.\n")
    w(f"| server | idle RSS MB | RSS with {ctx['held']:,} connections MB | per connection KiB |")
    w("|---|---:|---:|---:|")
    for r in mem:
        w(f"| {LABEL[r['server']]} | {r['idle'] / 1e6:.1f} | {r['held'] / 1e6:.1f} | "
          f"{r['per_conn'] / 1024:.1f} |")
    w("")

    w("## 5. Issuance\n")
    w(f"Certificates signed (ECDSA P-256 leaf from a P-256 intermediate) and, for Symbolon, "
      f"durably recorded with their audit record before the answer: SQLite in WAL mode with "
      f"`synchronous=FULL`, PostgreSQL with its defaults (`fsync` and `synchronous_commit` on). "
      f"In process: `symbolon bench issue --dir CA [--database URL] --identity … --count "
      f"{ctx['count_local']} --concurrency 16`. Over the API: `ca serve` on the same kind of "
      f"store, one one-time token (created before the clock starts) and one CSR per certificate, "
      f"`symbolon bench issue --ca https://… --count {ctx['count_api']} --concurrency 16`. cfssl: "
      f"`cfssl serve` signing the same kind of CSRs (`--api cfssl`), without a certificate "
      f"database, so it records nothing.\n")
    w("| CA | store | certificates | failed | **per second** | p50 ms | p99 ms | server CPU-s per 1,000 |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in iss:
        rep = r["report"]
        cpu = f"{r['cpu_s'] / max(rep['completed'], 1) * 1000:.3f}" if "cpu_s" in r else "(same process)"
        w(f"| {r['how']} | {r['store']} | {f0(rep['completed'])} | {rep['failed']} | "
          f"**{f0(rep['rate_per_s'])}** | {ms(lat(rep, 'p50'))} | {ms(lat(rep, 'p99'))} | {cpu} |")
    w("")

    w("## 6. Revocation\n")
    if ctx.get("revocation"):
        w("### Propagation\n")
        w(ctx["revocation"].strip() + "\n")
    if ctx.get("crl"):
        w("### A CRL of 1,000,000 entries\n")
        w("Output of `target/release/examples/crl_scale 1000000` (signs the CRL with an ECDSA "
          "P-256 intermediate, then loads it in a fresh process the way the gateway does):\n")
        w(ctx["crl"].strip() + "\n")
    with open(out, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/symbolon"))
    ap.add_argument("--crl-bin", default=os.path.join(ROOT, "target/release/examples/crl_scale"))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--quick", action="store_true",
                    help="short runs (a smoke test of the suite, not numbers to publish)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--render", metavar="JSON",
                    help="only rewrite the report from a run's saved measurements")
    args = ap.parse_args()
    if args.render:
        write_report(args.out, json.load(open(args.render)))
        print(f"written {args.out}")
        return
    sym = os.path.abspath(args.bin)
    q = args.quick
    ctx = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "argv": " ".join(["bench/suite.py"] + sys.argv[1:]),
        "duration": "2s" if q else "10s",
        "concurrency": 16,
        "rate": 1000,
        "connections": 16,
        "held": 200 if q else 1000,
        "count_local": 500 if q else 5000,
        "count_api": 300 if q else 3000,
        "crypto_time": "200ms" if q else "2s",
        "machine": machine(),
    }
    started = time.monotonic()
    d = tempfile.mkdtemp(prefix="symbolon-suite-")
    logs = open(os.path.join(d, "servers.log"), "w")
    servers = {}
    try:
        make_pki(sym, d)
        print("crypto bound …", flush=True)
        ctx["crypto"] = crypto_bound(sym, d, ctx["crypto_time"])
        servers = start_servers(sym, d, logs)
        print("memory (idle first) …", flush=True)
        ctx["memory"] = memory(servers, ctx["held"], d)
        print("handshakes …", flush=True)
        ctx["handshakes"] = handshakes(sym, d, servers, ctx["duration"], ctx["concurrency"])
        print("HTTP latency …", flush=True)
        ctx["http"] = http_latency(sym, d, servers, ctx["rate"], ctx["duration"],
                                   ctx["connections"])
        for s in servers.values():
            s.stop()
        servers = {}
        print("issuance …", flush=True)
        ctx["issuance"] = issuance(sym, d, ctx["count_local"], ctx["count_api"], logs)
        print("revocation propagation …", flush=True)
        rev_md = os.path.join(d, "revocation.md")
        run([sys.executable, os.path.join(HERE, "revocation_propagation.py"), "--bin", sym,
             "--iterations", "20" if q else "100", rev_md], ROOT, timeout=900)
        ctx["revocation"] = open(rev_md).read()
        if not q and os.path.exists(args.crl_bin):
            print("CRL of 1,000,000 entries …", flush=True)
            ctx["crl"] = run([args.crl_bin, "1000000"], d, timeout=900).stdout
        ctx["elapsed"] = time.monotonic() - started
        # The raw measurements, so the report can be re-rendered (--render).
        raw = os.path.join(ROOT, "target", "bench", "suite.json")
        os.makedirs(os.path.dirname(raw), exist_ok=True)
        with open(raw, "w") as f:
            json.dump(ctx, f, indent=1)
        write_report(args.out, ctx)
        print(f"written {args.out}")
    finally:
        for s in servers.values():
            s.stop()
        logs.close()
        if args.keep:
            print(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
