#!/usr/bin/env python3
"""Revocation propagation benchmark: how long after `POST /v1/revoke` does
the gateway close a live connection of that certificate, and refuse a new
handshake with it?

Everything runs on loopback in a temporary directory:

  symbolon ca init      (plaintext root key, trust domain example.org)
  symbolon ca serve     (the control plane, with the revocation feed)
  an echo backend       (python, TCP)
  symbolon gateway      (TCP mode, allow-all policy, [revocation] feed = ca serve)

then, ITERATIONS times (default 100):

  1. `ca issue --spiffe-id spiffe://example.org/c/N --out cN`
  2. open a TLS connection through the gateway with cN, check an echo
  3. open an mTLS connection to `ca serve` with cN (outside the timing)
  4. t0 = just before the POST; POST /v1/revoke {"serial", "reason":"keyCompromise"}
     authenticated by cN itself
  5. concurrently, until IT_TIMEOUT (10 s) after the iteration started:
     - the live connection sends one byte every 5 ms and waits up to 5 ms
       for echoes; EOF, a TLS alert or a reset means the gateway closed it
     - a new handshake with cN is tried every 5 ms (start to start); each
       try sends "hi" and waits for the echo; an alert, EOF or reset instead
       of the echo means it was refused
  Both times are measured from t0 with one monotonic clock; an iteration
  that does not see both within its deadline counts as a failure.

Usage: revocation_propagation.py [--bin target/release/symbolon]
       [--iterations 100] [--keep] OUT.md
Prints a Markdown report and writes it to OUT.md.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

IT_TIMEOUT = 10.0  # seconds per iteration, from its start
POLL = 0.005  # polling granularity
TOTAL_BUDGET = 170.0  # stop starting new iterations after this many seconds
JITTER = 0.2  # random pause before each POST, seconds
GOAL_MS = 1000.0  # p99 goal for both measurements

ECHO = r"""
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(512)
print(srv.getsockname()[1], flush=True)
def serve(c):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {limit}s")


def wait_log(path, needle, proc, what, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{read(path)}")
        if needle in read(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} never logged {needle!r}:\n{read(path)}")


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def machine():
    cpuinfo = read("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    logical = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)
    return {
        "cpus": logical,
        "usable": usable,
        "model": models[0].strip() if models else platform.processor() or "unknown",
        "mem_gib": int(mem.group(1)) / 1024 / 1024 if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_rev(repo):
    try:
        rev = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        if not rev:
            return "unknown (not a git checkout)"
        return rev + (" (working tree has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def percentile(sorted_vals, p):
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, -(-len(sorted_vals) * p // 100))  # ceil(n * p / 100), at least 1
    return sorted_vals[int(k) - 1]


def client_ctx(cert, key):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations("ca/root.crt")
    c.load_cert_chain(cert, key)
    return c


def tls_connect(ctx, port, timeout):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def echo_once(s, payload, deadline):
    """Sends payload and reads the same bytes back; False on EOF."""
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        s.settimeout(max(0.001, deadline - time.monotonic()))
        d = s.recv(len(payload) - len(got))
        if not d:
            return False
        got += d
    return got == payload


def watch_live(live, deadline, out):
    """Sends one byte every POLL seconds on the live connection and reads the
    echoes in between; EOF, a TLS alert or a reset means the gateway closed it."""
    try:
        while time.monotonic() < deadline:
            tick = time.monotonic() + POLL
            live.settimeout(1.0)
            live.sendall(b"p")
            while True:
                left = tick - time.monotonic()
                if left <= 0:
                    break
                live.settimeout(left)
                try:
                    d = live.recv(64)
                except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                    break
                if not d:
                    out["closed"] = time.monotonic()
                    out["closed_how"] = "EOF"
                    return
        out["closed_how"] = "timeout"
    except (OSError, ssl.SSLError) as e:
        out["closed"] = time.monotonic()
        out["closed_how"] = how(e)


def how(e):
    """A short name for the way a connection ended."""
    m = re.search(r"\[SSL: ([A-Z0-9_]+)\]", str(e))
    return f"{type(e).__name__} {m.group(1)}" if m else type(e).__name__


def watch_handshakes(ctx, port, deadline, out):
    """Tries a new handshake (and an echo) every POLL seconds until one is
    refused with a TLS alert. A connection that is accepted and then closed
    (its handshake passed just before the revocation arrived) is not a
    refusal: the watcher keeps trying."""
    tries = 0
    while time.monotonic() < deadline:
        start = time.monotonic()
        tries += 1
        s = None
        try:
            s = tls_connect(ctx, port, timeout=max(0.01, deadline - start))
            if not echo_once(s, b"hi", min(deadline, start + 2.0)):
                out["accepted_then_closed"] = out.get("accepted_then_closed", 0) + 1
        except ssl.SSLError as e:
            out["refused"] = time.monotonic()
            out["refused_how"] = how(e)
            out["tries"] = tries
            return
        except (socket.timeout, TimeoutError):
            pass  # neither an echo nor a refusal: keep trying until the deadline
        except OSError:
            out["accepted_then_closed"] = out.get("accepted_then_closed", 0) + 1
        finally:
            if s is not None:
                s.close()
        left = POLL - (time.monotonic() - start)
        if left > 0:
            time.sleep(left)
    out["tries"] = tries


def serial_of(sym, issue_stdout, cert):
    m = re.search(r"certificate ([0-9a-f]{2,40})\b", issue_stdout)
    if m:
        return m.group(1)
    o = subprocess.run([sym, "cert", "inspect", cert, "--json"],
                       capture_output=True, text=True, timeout=10, check=True)
    return json.loads(o.stdout)[0]["serial"]


def iteration(sym, n, gw_port, ca_port):
    started = time.monotonic()
    deadline = started + IT_TIMEOUT
    name = f"c{n}"
    o = subprocess.run(
        [sym, "ca", "issue", "--dir", "ca", "--spiffe-id",
         f"spiffe://example.org/c/{n}", "--out", name],
        capture_output=True, text=True, timeout=IT_TIMEOUT,
    )
    if o.returncode != 0:
        raise RuntimeError(f"ca issue failed: {o.stderr.strip()}")
    serial = serial_of(sym, o.stdout, f"{name}.crt")
    ctx = client_ctx(f"{name}.crt", f"{name}.key")

    live = tls_connect(ctx, gw_port, timeout=5)
    api = None
    try:
        if not echo_once(live, b"ping", min(deadline, time.monotonic() + 5)):
            raise RuntimeError("no echo through the gateway before revocation")
        # The mTLS connection to the CA is set up outside the timing.
        api = http.client.HTTPSConnection("localhost", ca_port, timeout=5, context=ctx)
        api.sock = tls_connect(ctx, ca_port, timeout=5)
        body = json.dumps({"serial": serial, "reason": "keyCompromise"})

        live_out, hs_out = {}, {}
        threads = [
            threading.Thread(target=watch_live, args=(live, deadline, live_out), daemon=True),
            threading.Thread(target=watch_handshakes, args=(ctx, gw_port, deadline, hs_out),
                             daemon=True),
        ]
        # A random pause puts the POST at a random point of the control
        # plane's store polling cycle; without it, iterations would lock onto
        # that cycle and always measure the same phase.
        time.sleep(random.uniform(0.0, JITTER))
        # The watchers start first (a few polls of a still-good certificate
        # cost nothing), so they are already polling when the POST goes out.
        for t in threads:
            t.start()
        t0 = time.monotonic()
        api.request("POST", "/v1/revoke", body=body,
                    headers={"Content-Type": "application/json"})
        resp = api.getresponse()
        answer = resp.read()
        t_api = time.monotonic()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 2.0)
        if resp.status != 200:
            raise RuntimeError(f"POST /v1/revoke answered {resp.status}: {answer[:200]!r}")
        if live_out.get("closed", t0) < t0:
            raise RuntimeError("the live connection ended before the POST "
                               f"({live_out.get('closed_how')})")
        res = {"serial": serial, "api_ms": (t_api - t0) * 1000}
        if "closed" in live_out:
            res["closed_ms"] = (live_out["closed"] - t0) * 1000
        if "refused" in hs_out:
            res["refused_ms"] = (hs_out["refused"] - t0) * 1000
        res["closed_how"] = live_out.get("closed_how")
        res["refused_how"] = hs_out.get("refused_how")
        res["tries"] = hs_out.get("tries")
        res["accepted_then_closed"] = hs_out.get("accepted_then_closed", 0)
        return res
    finally:
        live.close()
        if api is not None:
            api.close()


def row(label, vals):
    v = sorted(vals)
    if not v:
        return f"| {label} | 0 | – | – | – | – | – |"
    return "| {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |".format(
        label, len(v), v[0], percentile(v, 50), percentile(v, 90), percentile(v, 99), v[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="write the Markdown report here too")
    ap.add_argument("--bin", default="target/release/symbolon")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    sym = os.path.abspath(args.bin)
    if not os.access(sym, os.X_OK):
        sys.exit(f"{sym}: not an executable; build it with `cargo build --release -p symbolon`")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_path = os.path.abspath(args.out)
    tmp = tempfile.mkdtemp(prefix="symbolon-revbench-")
    os.chdir(tmp)
    procs = []
    bench_start = time.monotonic()
    try:
        def run(*a):
            subprocess.run([sym, *a], check=True, capture_output=True, timeout=60)

        run("ca", "init", "--dir", "ca", "--insecure-plaintext-root-key",
            "--trust-domain", "example.org")
        run("ca", "issue", "--dir", "ca", "--dns", "localhost", "--ip", "127.0.0.1",
            "--profile", "server", "--out", "gw")

        ca_port = free_port()
        serve = subprocess.Popen(
            [sym, "ca", "serve", "--dir", "ca", "--listen", f"127.0.0.1:{ca_port}"],
            stdout=subprocess.DEVNULL, stderr=open("serve.log", "wb"))
        procs.append(serve)
        wait_port(ca_port, serve, "ca serve")

        echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
        procs.append(echo)
        backend_port = int(echo.stdout.readline())

        gw_port = free_port()
        with open("gw.toml", "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:{gw_port}"
cert = "gw.crt"
key = "gw.key"
client_ca = "ca/ca-bundle.pem"

[upstream]
address = "127.0.0.1:{backend_port}"
protocol = "tcp"

[[policy.rule]]
name = "all"
effect = "allow"

[revocation]
feed = "https://localhost:{ca_port}"
""")
        gw = subprocess.Popen([sym, "gateway", "--config", "gw.toml"],
                              stdout=subprocess.DEVNULL, stderr=open("gw.log", "wb"))
        procs.append(gw)
        wait_port(gw_port, gw, "gateway")
        wait_log("gw.log", "following the revocation feed", gw, "gateway")
        setup_s = time.monotonic() - bench_start

        results, failures = [], []
        for n in range(1, args.iterations + 1):
            if time.monotonic() - bench_start > TOTAL_BUDGET:
                failures.append((n, f"not run: total budget of {TOTAL_BUDGET:.0f}s used"))
                continue
            try:
                r = iteration(sym, n, gw_port, ca_port)
            except Exception as e:  # one bad iteration must not end the run
                failures.append((n, f"{type(e).__name__}: {e}"[:200]))
                continue
            missing = [k for k in ("closed_ms", "refused_ms") if k not in r]
            if missing:
                failures.append((n, "no " + " and no ".join(
                    "close of the live connection" if k == "closed_ms" else "refused handshake"
                    for k in missing) + f" within {IT_TIMEOUT:.0f}s"))
            else:
                results.append(r)
            progress = f"{n}/{args.iterations}  ok {len(results)}  failed {len(failures)}"
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{progress}   ")
                sys.stderr.flush()
            elif n % 10 == 0 or n == args.iterations:
                print(progress, file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        total_s = time.monotonic() - bench_start
        log = read("gw.log")
        closes_logged = log.count("connection closed: client certificate revoked")
        late_accepts = sum(r["accepted_then_closed"] for r in results)

        m = machine()
        closed = [r["closed_ms"] for r in results]
        refused = [r["refused_ms"] for r in results]
        api = [r["api_ms"] for r in results]
        hows = sorted({r["closed_how"] or "?" for r in results})
        refusals = sorted({r["refused_how"] or "?" for r in results})
        p99c = percentile(sorted(closed), 99) if closed else float("inf")
        p99r = percentile(sorted(refused), 99) if refused else float("inf")
        met = bool(closed) and p99c < GOAL_MS and p99r < GOAL_MS and not failures
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [
            f"Revocation propagation: {len(results)} of {args.iterations} iterations "
            f"measured, {len(failures)} failed (timeout {IT_TIMEOUT:.0f}s each).",
            "",
            f"- date: {now}",
            f"- machine: {m['cpus']} logical CPUs ({m['usable']} usable by this process), "
            f"{m['model']}, "
            + (f"{m['mem_gib']:.1f} GiB RAM" if m["mem_gib"] else "RAM unknown")
            + f", Linux {m['kernel']}, Python {m['python']}",
            f"- symbolon: {git_rev(repo)}, binary {os.path.relpath(sym, repo)}",
            f"- polling: {POLL * 1000:.0f} ms; a random 0–{JITTER * 1000:.0f} ms pause "
            "before each POST; times from just before the POST "
            "(its mTLS connection already open), one monotonic clock; "
            "percentiles are nearest-rank",
            "",
            "| from `POST /v1/revoke` until (ms) | n | min | p50 | p90 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|",
            row("live connection closed by the gateway", closed),
            row("new handshake with the certificate refused", refused),
            row("(the POST's own response received)", api),
            "",
            f"Goal p99 < {GOAL_MS:.0f} ms for both, with no failures: "
            + ("**met**" if met else "**not met**")
            + f" (p99 close {p99c:.1f} ms, p99 refusal {p99r:.1f} ms, "
            f"{len(failures)} failure(s)).",
            "",
            f"How the live connections ended: {', '.join(hows) or '–'}; "
            f"how new handshakes were refused: {', '.join(refusals) or '–'}; "
            f"the gateway logged {closes_logged} connection close(s) for revocation "
            f"({len(results)} live connections; the rest are refusal-watcher connections "
            "still open or closing when the revocation arrived, "
            f"{late_accepts} of which the watcher saw accepted and then closed, "
            "not counted as refusals). "
            f"Setup {setup_s:.1f} s, whole run {total_s:.1f} s.",
        ]
        if failures:
            lines += ["", "Failures:", ""]
            lines += [f"- iteration {n}: {why}" for n, why in failures]
        report = "\n".join(lines) + "\n"
        print(report)
        os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
        with open(out_path, "w") as f:
            f.write(report)
        return 0 if results else 1
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        os.chdir("/")
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
