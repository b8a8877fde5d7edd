#!/usr/bin/env python3
"""Soak with faults (issue 12): mixed traffic against two wxmp instances on one Redis while
WeChat (the emulator), Redis and one instance misbehave on a schedule. Run by bench/soak.sh.

Everything it needs is started here, on free loopback ports, and stopped at the end: a
redis-server (no persistence), `wxmp emulator` with short-lived tokens, a webhook receiver
(this process) that records every delivered push, and two `wxmp serve` instances with one
config (three apps, plain/compat/safe, each forwarding to the webhook).

Traffic (RATE requests/s for DURATION s, from WORKERS threads): callbacks to both instances
alternately, each a new MsgId, a share of them repeated as WeChat does (the identical request
again, or the same push re-signed, often to the other instance); token GETs; passive refreshes
of a superseded token (free: wxmp answers with the current one) and, every
PASSIVE_CURRENT_S, of the current token (a real refresh); proxy calls.

Faults, at fixed fractions of DURATION: a -1 storm on the token endpoints that wxmp's retries
absorb, a slow upstream (3 s on every call), instance B killed with SIGKILL and started again,
Redis killed and started again (empty: no persistence), and a longer -1 storm.

The report (stdout, and markdown to REPORT): requests by endpoint and status, 5xx with their
cause, RSS per minute, upstream token calls against refresh cycles, and whether each pushed
MsgId reached the webhook exactly once.

Only the standard library is used. Python has no AES, so the encrypted pushes are sealed by
the `seal` example of wxmp-proto, kept running as a coprocess (SEAL).
"""

import hashlib
import heapq
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict

# ---------------------------------------------------------------- settings

DURATION = float(os.environ.get("DURATION", "1800"))
RATE = float(os.environ.get("RATE", "100"))
WORKERS = int(os.environ.get("WORKERS", "16"))
BIN = os.environ["BIN"]
SEAL = os.environ["SEAL"]
WORK = os.environ["WORK"]
REPORT = os.environ.get("REPORT", "bench/soak-report.md")
REPEAT_SHARE = float(os.environ.get("REPEAT_SHARE", "0.2"))
# Token lifetime the emulator announces: short enough for a dozen scheduled refreshes per run.
TOKEN_LIFETIME = int(os.environ.get("TOKEN_LIFETIME", str(max(60, int(DURATION // 12)))))
# WeChat's overlap (and stable renewal window) scaled like wxmp's refresh lead (a fifth).
OVERLAP = max(12, TOKEN_LIFETIME // 5)
# How often each app gets a passive refresh of its current token: 6 per app per run, whatever
# DURATION, so that most refresh cycles are the scheduled ones, and a stable app's forced
# refreshes (WeChat allows 20 a day) stay within budget.
PASSIVE_CURRENT_S = float(os.environ.get("PASSIVE_CURRENT_S", str(max(20.0, DURATION / 6))))
REDIS_DOWN_S = float(os.environ.get("REDIS_DOWN_S", "10"))
INSTANCE_DOWN_S = float(os.environ.get("INSTANCE_DOWN_S", "5"))
SLOW_S = float(os.environ.get("SLOW_S", str(max(20.0, DURATION * 0.05))))
RSS_EVERY_S = float(os.environ.get("RSS_EVERY_S", "60"))
API_KEY = "soak-api-key-0123456789abcdef"
RUN = "%x" % random.getrandbits(32)

APPS = {
    # name: (appid, secret, token, aes key or None, mode, token_api)
    "plain": ("wx50a4000000000001", "soak-secret-plain", "soakplain", None, "plain", "classic"),
    "compat": ("wx50a4000000000002", "soak-secret-compat", "soakcompat",
               "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "compat", "stable"),
    "safe": ("wx50a4000000000003", "soak-secret-safe", "soaksafe",
             "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg", "safe", "stable"),
}

T0 = time.time()


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


LOAD_START = loadavg()


def now():
    return time.time() - T0


def log(msg):
    print("[%7.1fs] %s" % (now(), msg), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


# ---------------------------------------------------------------- bookkeeping

lock = threading.Lock()
requests_by = Counter()            # (endpoint, status) -> n
latency = defaultdict(list)        # endpoint -> [seconds] (answered requests)
no_answer = []                     # (t, endpoint, instance, status) for conn_error/timeout
fivexx = []                        # (t, endpoint, instance, status, body excerpt)
events = []                        # (t, text): the fault timeline
windows = defaultdict(list)        # fault name -> [(start, end)]
sent = {}                          # msgid -> dict(app, t, inst)
delivered = defaultdict(list)      # msgid -> [t, ...]
tokens_seen = defaultdict(dict)    # app -> {token: first t}
passive_current = Counter()        # (app, refreshed) -> n
rss = []                           # (t, {inst: kB or None})
audit = defaultdict(set)           # app -> {(at, kind, reason, by, result)}
metrics_last = {}                  # (inst, incarnation) -> {(app, kind, reason): n}
errcodes = Counter()               # (endpoint, errcode) for 200 answers carrying one
stop = threading.Event()


def event(text):
    with lock:
        events.append((now(), text))
    log(text)


def count(endpoint, status, inst, body=b"", took=None):
    with lock:
        requests_by[(endpoint, status)] += 1
        if took is not None and isinstance(status, int):
            latency[endpoint].append(took)
        if status in ("conn_error", "timeout"):
            no_answer.append((now(), endpoint, inst, status))
        if isinstance(status, int) and status >= 500:
            fivexx.append((now(), endpoint, inst, status, body[:200].decode("utf-8", "replace")))


# ---------------------------------------------------------------- processes

procs = {}       # name -> Popen
incarnation = {"A": 0, "B": 0}
ports = {}


def start(name, argv, logname):
    out = open(os.path.join(WORK, logname), "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    procs[name] = p
    return p


def start_redis():
    start("redis", ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", WORK], "redis.log")
    if not wait_port(ports["redis"]):
        raise SystemExit("redis-server did not start")


def start_instance(inst):
    incarnation[inst] += 1
    start(inst, [BIN, "serve", "--config", os.path.join(WORK, "wxmp.toml"),
                 "--listen", "127.0.0.1:%d" % ports[inst]], "wxmp-%s.log" % inst)
    end = time.time() + 30
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", ports[inst], timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("wxmp serve %s did not come up (see %s)" % (inst, WORK))


def kill9(name):
    p = procs.get(name)
    if p and p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def write_config():
    hook = "http://127.0.0.1:%d/hook" % ports["hook"]
    lines = [
        'listen = "127.0.0.1:%d"' % ports["A"],
        'upstream = "http://127.0.0.1:%d"' % ports["emu"],
        "[store]",
        'backend = "redis"',
        'url = "redis://127.0.0.1:%d/0"' % ports["redis"],
        'prefix = "soak-%s:"' % RUN,
        "[api]",
        'keys = ["%s"]' % API_KEY,
    ]
    for name, (appid, secret, token, key, mode, api) in APPS.items():
        lines += ["[apps.%s]" % name, 'appid = "%s"' % appid, 'secret = "%s"' % secret,
                  'token = "%s"' % token, 'mode = "%s"' % mode, 'token_api = "%s"' % api,
                  'forward = "%s"' % hook]
        if key:
            lines.append('encoding_aes_key = "%s"' % key)
    with open(os.path.join(WORK, "wxmp.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- webhook receiver

class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered, so that the answer's head and body leave in one packet (flushed after each
    # request): written apart, Nagle's algorithm and the peer's delayed ACK hold the body back
    # about 40 ms, which showed up as the callbacks' p99.
    wbufsize = -1

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            push = json.loads(body)
        except ValueError:
            push = {}
        msgid = push.get("MsgId")
        if msgid:
            with lock:
                delivered[msgid].append(now())
        # Half the pushes get a text reply (encrypted back to WeChat), half "handled, nothing
        # to say".
        if msgid and int(msgid) % 2:
            out = json.dumps({"type": "text", "content": "got " + msgid}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        else:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


# ---------------------------------------------------------------- HTTP client side

class Client:
    """Keep-alive connections to the two instances, reopened after any error."""

    def __init__(self):
        self.conns = {}
        self.took = 0.0

    def call(self, inst, method, path, body=None, headers=None, timeout=15.0):
        started = time.time()
        out = self._call(inst, method, path, body, headers, timeout)
        self.took = time.time() - started
        return out

    def _call(self, inst, method, path, body, headers, timeout):
        headers = dict(headers or {})
        for attempt in (0, 1):
            c = self.conns.get(inst)
            if c is None:
                c = http.client.HTTPConnection("127.0.0.1", ports[inst], timeout=timeout)
                self.conns[inst] = c
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    self.conns.pop(inst, None)
                return r.status, data
            except socket.timeout:
                c.close()
                self.conns.pop(inst, None)
                return "timeout", b""
            except (OSError, http.client.HTTPException) as e:
                c.close()
                self.conns.pop(inst, None)
                # A kept-alive connection the server closed between requests: once more on
                # a fresh one. A refused connection is the answer.
                if attempt == 0 and not isinstance(e, ConnectionRefusedError):
                    continue
                return "conn_error", b""
        return "conn_error", b""


def auth():
    return {"Authorization": "Bearer " + API_KEY}


def other(inst):
    return "B" if inst == "A" else "A"


# ---------------------------------------------------------------- pushes

seal_lock = threading.Lock()
seal_proc = None


def seal(key, appid, xml):
    with seal_lock:
        seal_proc.stdin.write("%s\t%s\t%s\t%s\n" % (key, appid, os.urandom(16).hex(), xml))
        seal_proc.stdin.flush()
        line = seal_proc.stdout.readline().strip()
    if not line or line.startswith("ERROR"):
        raise RuntimeError("seal: " + line)
    return line


def sha1(*parts):
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def push_xml(msgid, openid, create_time):
    return ("<xml><ToUserName><![CDATA[gh_soak]]></ToUserName><FromUserName><![CDATA[%s]]>"
            "</FromUserName><CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            "<Content><![CDATA[soak message %s]]></Content><MsgId>%s</MsgId></xml>"
            % (openid, create_time, msgid, msgid))


def signed(app, xml, openid, encrypted):
    """(path with query, body) as WeChat sends the push at this moment."""
    appid, _secret, token, key, _mode, _api = APPS[app]
    ts = str(int(time.time()))
    nonce = str(random.randrange(10**9, 10**10))
    q = [("signature", sha1(token, ts, nonce)), ("timestamp", ts), ("nonce", nonce),
         ("openid", openid)]
    body = xml
    if encrypted:
        enc = seal(key, appid, xml)
        q += [("encrypt_type", "aes"), ("msg_signature", sha1(token, ts, nonce, enc))]
        if APPS[app][4] == "compat":
            body = xml[: -len("</xml>")] + "<Encrypt><![CDATA[%s]]></Encrypt></xml>" % enc
        else:
            body = ("<xml><ToUserName><![CDATA[gh_soak]]></ToUserName>"
                    "<Encrypt><![CDATA[%s]]></Encrypt></xml>" % enc)
    return "/wx/%s?%s" % (app, urllib.parse.urlencode(q)), body.encode()


msgid_next = [random.randrange(10**15, 2 * 10**15)]
repeats = []                 # heap of (due, seq, kind, app, path, body, xml, openid, enc, inst)
repeat_seq = [0]


def post_push(client, inst, endpoint, path, body, msgid):
    status, data = client.call(inst, "POST", path, body, {"Content-Type": "text/xml"})
    count(endpoint, status, inst, data, client.took)
    with lock:
        sent[msgid]["reqs"].append((now(), inst, status))
    return status


def send_push(client, inst):
    app = random.choice(list(APPS))
    with lock:
        msgid_next[0] += 1
        msgid = str(msgid_next[0])
    openid = "oSoak%06d" % random.randrange(10**6)
    xml = push_xml(msgid, openid, int(time.time()))
    mode = APPS[app][4]
    enc = mode == "safe" or (mode == "compat" and random.random() < 0.7)
    path, body = signed(app, xml, openid, enc)
    with lock:
        sent[msgid] = {"app": app, "t": now(), "inst": inst, "reqs": []}
    status = post_push(client, inst, "callback %s%s" % (app, "" if enc or mode == "plain" else " (plaintext)"),
                       path, body, msgid)
    if status in ("conn_error", "timeout"):
        # WeChat got no answer: it retries, and the load balancer picks the live instance.
        post_push(client, other(inst), "callback retry after no answer",
                  *signed(app, xml, openid, enc), msgid)
    if random.random() < REPEAT_SHARE:
        kind = random.choice(["identical", "re-signed"])
        # Mostly WeChat's 5 s retry; some arrive while the first is still being handled.
        delay = random.choice([random.uniform(0.0, 0.3), random.uniform(1, 6)])
        target = random.choice([inst, other(inst), other(inst)])
        with lock:
            repeat_seq[0] += 1
            heapq.heappush(repeats, (time.time() + delay, repeat_seq[0], kind, app, path, body,
                                     xml, openid, enc, target))


def due_repeat():
    with lock:
        if repeats and repeats[0][0] <= time.time():
            return heapq.heappop(repeats)
    return None


def send_repeat(client, r):
    _due, _seq, kind, app, path, body, xml, openid, enc, inst = r
    msgid = re.search(r"<MsgId>(\d+)</MsgId>", xml).group(1)
    if kind == "re-signed":
        path, body = signed(app, xml, openid, enc)
    status = post_push(client, inst, "callback repeat (%s)" % kind, path, body, msgid)
    if status in ("conn_error", "timeout"):
        post_push(client, other(inst), "callback retry after no answer", path, body, msgid)


# ---------------------------------------------------------------- /v1 calls

held = defaultdict(list)     # app -> distinct tokens this driver saw, oldest first


def saw_token(app, token):
    with lock:
        if token not in tokens_seen[app]:
            tokens_seen[app][token] = now()
            held[app].append(token)


def token_get(client, inst, app, endpoint="token GET"):
    status, data = client.call(inst, "GET", "/v1/apps/%s/access_token" % app, headers=auth())
    count(endpoint, status, inst, data, client.took)
    if status == 200:
        token = json.loads(data)["access_token"]
        saw_token(app, token)
        return token
    return None


def refresh(client, inst, app, stale, endpoint):
    status, data = client.call(inst, "POST", "/v1/apps/%s/access_token/refresh" % app,
                               json.dumps({"stale": stale}).encode(),
                               dict(auth(), **{"Content-Type": "application/json"}))
    count(endpoint, status, inst, data, client.took)
    if status == 200:
        answer = json.loads(data)
        saw_token(app, answer["access_token"])
        return answer
    return None


def refresh_superseded(client, inst):
    app = random.choice(list(APPS))
    with lock:
        old = held[app][-2] if len(held[app]) >= 2 else None
    if old is None:
        token_get(client, inst, app)
        return
    refresh(client, inst, app, old, "refresh, superseded token")


def refresh_current(client, app):
    inst = random.choice("AB")
    token = token_get(client, inst, app, "token GET")
    if token is None:
        return
    answer = refresh(client, other(inst), app, token, "refresh, current token")
    if answer is not None:
        with lock:
            passive_current[(app, bool(answer.get("refreshed")))] += 1


PROXY_PATHS = ["/cgi-bin/getcallbackip", "/cgi-bin/user/info?openid=oSoak000001&lang=zh_CN"]


def proxy(client, inst):
    app = random.choice(list(APPS))
    path = "/v1/apps/%s/proxy%s" % (app, random.choice(PROXY_PATHS))
    status, data = client.call(inst, "GET", path, headers=auth())
    count("proxy", status, inst, data, client.took)
    if status == 200:
        try:
            code = json.loads(data).get("errcode", 0)
        except ValueError:
            code = "not JSON"
        if code:
            with lock:
                errcodes[("proxy", code)] += 1


# ---------------------------------------------------------------- threads

def worker(n):
    client = Client()
    rng = random.Random(n)
    period = WORKERS / RATE
    nxt = time.time() + rng.uniform(0, period)
    turn = n % 2
    while not stop.is_set():
        r = due_repeat()
        if r:
            send_repeat(client, r)
            continue
        inst = "AB"[turn]
        turn ^= 1
        x = rng.random()
        try:
            if x < 0.55:
                send_push(client, inst)
            elif x < 0.80:
                token_get(client, inst, rng.choice(list(APPS)))
            elif x < 0.92:
                proxy(client, inst)
            else:
                refresh_superseded(client, inst)
        except Exception as e:  # keep the load going; the error is reported
            count("driver error: %s" % type(e).__name__, "exception", inst)
        nxt += period
        delay = nxt - time.time()
        if delay > 0:
            stop.wait(delay)
        elif delay < -5:
            nxt = time.time()   # fell far behind (a stall): do not burst to catch up


def passive_current_loop():
    client = Client()
    names = list(APPS)
    i = 0
    while not stop.wait(PASSIVE_CURRENT_S / len(names)):
        refresh_current(client, names[i % len(names)])
        i += 1


def read_rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_loop():
    while True:
        sample = {}
        for inst in "AB":
            p = procs.get(inst)
            sample[inst] = (read_rss(p.pid) if p and p.poll() is None else None,
                            incarnation[inst])
        with lock:
            rss.append((now(), sample))
        if stop.wait(RSS_EVERY_S):
            return


METRIC = re.compile(r'^wxmp_token_refreshes_total\{(.*)\} (\d+)')


def scrape_once(client):
    for inst in "AB":
        status, data = client.call(inst, "GET", "/metrics", headers=auth(), timeout=5)
        if status != 200:
            continue
        values = {}
        for line in data.decode().splitlines():
            m = METRIC.match(line)
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
                values[(labels.get("app"), labels.get("kind"), labels.get("reason"))] = int(m.group(2))
        with lock:
            metrics_last[(inst, incarnation[inst])] = values
    for app in APPS:
        status, data = client.call("AB"[random.randrange(2)], "GET",
                                   "/v1/apps/%s/refreshes" % app, headers=auth(), timeout=5)
        if status == 200:
            with lock:
                for r in json.loads(data)["refreshes"]:
                    audit[app].add((r["at"], r["kind"], r["reason"], r["by"], r["result"]))


def scrape_loop():
    client = Client()
    while not stop.wait(5):
        try:
            scrape_once(client)
        except Exception as e:
            log("scrape failed: %r" % e)


# ---------------------------------------------------------------- faults

def emu(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", ports["emu"], timeout=10)
    c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


def faults_left():
    _s, v = emu("GET", "/_emulator/faults")
    return len(v.get("faults", []))


def storm(name, times):
    start_t = now()
    for ep in ("token", "stable_token"):
        emu("POST", "/_emulator/faults", {"endpoint": ep, "errcode": -1, "times": times})
    event("%s: -1 system error on the next %d calls of token and of stable_token" % (name, times))
    # Make it bite now rather than at the next scheduled refresh.
    for app in APPS:
        threading.Thread(target=refresh_current, args=(Client(), app), daemon=True).start()
    end = time.time() + 60
    while faults_left() and time.time() < end and not stop.is_set():
        time.sleep(0.5)
    left = faults_left()
    if left:
        emu("DELETE", "/_emulator/faults")
    windows[name].append((start_t, now()))
    event("%s over (%s)" % (name, "all consumed" if not left else "%d faults cleared unused" % left))


def slow():
    start_t = now()
    emu("POST", "/_emulator/faults", {"endpoint": "all", "delay_ms": 3000})
    event("slow upstream: every call to the emulator delayed 3 s for %.0f s" % SLOW_S)
    for app in APPS:
        threading.Thread(target=refresh_current, args=(Client(), app), daemon=True).start()
    stop.wait(SLOW_S)
    emu("DELETE", "/_emulator/faults")
    windows["slow upstream"].append((start_t, now()))
    event("slow upstream over")


def kill_instance():
    start_t = now()
    kill9("B")
    event("instance B killed (SIGKILL); down for %.0f s" % INSTANCE_DOWN_S)
    stop.wait(INSTANCE_DOWN_S)
    start_instance("B")
    windows["instance B down"].append((start_t, now()))
    event("instance B started again (pid %d)" % procs["B"].pid)


def restart_redis():
    start_t = now()
    kill9("redis")
    event("Redis killed (SIGKILL); down for %.0f s, comes back empty (no persistence)" % REDIS_DOWN_S)
    stop.wait(REDIS_DOWN_S)
    start_redis()
    windows["Redis down"].append((start_t, now()))
    event("Redis started again on the same port")


SCHEDULE = [
    (0.12, lambda: storm("-1 storm (short)", 4)),
    (0.28, slow),
    (0.45, kill_instance),
    (0.62, restart_redis),
    (0.80, lambda: storm("-1 storm (long)", 16)),
]


def fault_loop():
    for frac, action in SCHEDULE:
        if stop.wait(max(0.0, T_TRAFFIC + frac * DURATION - now())):
            return
        try:
            action()
        except Exception as e:
            event("fault action failed: %r" % e)


# ---------------------------------------------------------------- report

def in_window(t, names, before=0.0, after=0.0):
    for name in names:
        for (a, b) in windows.get(name, []):
            if a - before <= t <= b + after:
                return name
    return None


EXPECTED_5XX = {
    ("upstream_unavailable", "storm"): "expected: WeChat kept answering -1 past the 7 s fetch "
    "budget, and the caller asked for a new token (docs/token-core.md, Errors)",
    ("store_unavailable", "Redis down"): "expected: the held token is still valid and the "
    "refresh cannot take the shared lock (docs/token-core.md, Stores)",
}


def classify_5xx(endpoint, body, where):
    m = re.search(r'"code":"([^"]+)"', body)
    code = m.group(1) if m else body[:60]
    if endpoint.startswith("refresh"):
        for (c, w), why in EXPECTED_5XX.items():
            if c == code and where and w in where:
                return code, why
    return code, "UNEXPECTED"


def pct(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def final_stats():
    """The emulator's counters once every token it issued has been seen by a client."""
    client = Client()
    before = None
    for _ in range(10):
        _s, stats = emu("GET", "/_emulator/stats")
        if stats == before:
            return stats
        for app in APPS:
            for inst in "AB":
                token_get(client, inst, app, "token GET (final)")
        before = stats
        time.sleep(1)
    return before


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def wxmp_log_facts():
    """Per app, from both instances' logs (every run of them): successful token calls,
    normal-mode checks before a force_refresh decision, and forced refreshes that came less
    than 30 s after the previous one (the spacing key lives in Redis, so a restart loses it)."""
    import calendar
    facts = defaultdict(Counter)
    forced_at = defaultdict(list)
    for inst in "AB":
        try:
            lines = open(os.path.join(WORK, "wxmp-%s.log" % inst), errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            m = re.search(r"\bapp=(\w+)", line)
            if not m or 'kind="access_token"' not in line and "stable token reported stale" not in line:
                continue
            app = m.group(1)
            if "fetched from WeChat" in line:
                facts[app]["ok calls"] += 1
            elif "stable token reported stale" in line:
                facts[app]["normal-mode checks"] += 1
                if "force_refresh app=" in line:
                    t = LOG_TIME.match(line)
                    if t:
                        whole, _, frac = t.group(1).partition(".")
                        forced_at[app].append(calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
                                              + float("0." + (frac or "0")))
    for app, ts in forced_at.items():
        ts.sort()
        facts[app]["forced within 30 s"] = sum(1 for a, b in zip(ts, ts[1:]) if b - a < 30)
    return facts


def report(stats):
    out = []
    w = out.append
    w("# Soak with faults: %s" % time.strftime("%Y-%m-%d %H:%M", time.localtime(T0)))
    w("")
    w("`DURATION=%.0f RATE=%.0f bash bench/soak.sh`: %d workers, token lifetime %d s (overlap "
      "%d s), a passive refresh of the current token every %.0f s per app, run prefix soak-%s. "
      "Machine: %d cores, shared." % (DURATION, RATE, WORKERS, TOKEN_LIFETIME, OVERLAP,
                                      PASSIVE_CURRENT_S, RUN, os.cpu_count() or 0))
    w("Load average (1 min) at the start %s, at the end %s." % (LOAD_START, loadavg()))
    w("")
    w("## Fault timeline (seconds from the start of traffic)")
    w("")
    for t, text in events:
        w("- %.1f: %s" % (t - T_TRAFFIC, text))
    w("")
    w("## Requests by endpoint and status")
    w("")
    statuses = sorted({s for (_e, s) in requests_by}, key=str)
    w("| endpoint | " + " | ".join(str(s) for s in statuses) + " | total | p50 ms | p99 ms | max ms |")
    w("|---|" + "---|" * (len(statuses) + 4))
    total = Counter()
    for ep in sorted({e for (e, _s) in requests_by}):
        row = [requests_by.get((ep, s), 0) for s in statuses]
        for s, n in zip(statuses, row):
            total[s] += n
        lat = latency.get(ep, [])
        w("| %s | %s | %d | %.0f | %.0f | %.0f |" % (
            ep, " | ".join(str(n) for n in row), sum(row), pct(lat, 0.5) * 1000,
            pct(lat, 0.99) * 1000, (max(lat) if lat else 0) * 1000))
    w("| **all** | %s | **%d** | | | |" % (" | ".join(str(total[s]) for s in statuses),
                                          sum(total.values())))
    w("")
    if errcodes:
        w("200 answers carrying a WeChat errcode: " +
          ", ".join("%s errcode %s: %d" % (e, c, n) for (e, c), n in sorted(errcodes.items())))
        w("")
    if no_answer:
        during = Counter()
        for (t, ep, inst, st) in no_answer:
            where = in_window(t, ["instance B down"], before=0.5, after=0.5)
            during["instance %s, %s" % (inst, "while B was down" if where else "OUTSIDE B's outage")] += 1
        w("No answer (conn_error/timeout): " + ", ".join("%s: %d" % kv for kv in sorted(during.items())) +
          ". A callback without an answer was retried on the other instance, as WeChat's retry "
          "through a load balancer would be.")
        w("")
    w("## 5xx: %d" % len(fivexx))
    w("")
    unexpected = 0
    if fivexx:
        by = Counter()
        for (t, ep, inst, st, body) in fivexx:
            where = in_window(t, list(windows), before=1, after=5)
            code, why = classify_5xx(ep, body, where)
            unexpected += why == "UNEXPECTED"
            by[(ep, st, code, where or "no fault", why)] += 1
        w("| endpoint | status | error | during | n | verdict |")
        w("|---|---|---|---|---|---|")
        for (ep, st, code, where, why), n in sorted(by.items(), key=lambda kv: -kv[1]):
            w("| %s | %s | %s | %s | %d | %s |" % (ep, st, code, where, n, why))
        w("")
        seen = set()
        for (t, ep, inst, st, body) in fivexx:
            if (ep, st, body[:40]) in seen:
                continue
            seen.add((ep, st, body[:40]))
            w("- first at %.1f s, instance %s, %s: `%s`" % (t - T_TRAFFIC, inst, ep, body.replace("`", "'")))
        w("")
    w("**5xx for good input outside the expected cases: %d.**" % unexpected)
    w("")
    w("## RSS (VmRSS, MiB) every %.0f s" % RSS_EVERY_S)
    w("")
    w("| minute | A | B |")
    w("|---|---|---|")
    for i, (t, sample) in enumerate(rss):
        cells = []
        for inst in "AB":
            kb, inc = sample[inst]
            cells.append("down" if kb is None else "%.1f%s" % (kb / 1024, "" if inc == 1 else " (restarted)"))
        label = "end" if i == len(rss) - 1 else "%.0f" % max(0, (t - T_TRAFFIC) / 60)
        w("| %s | %s |" % (label, " | ".join(cells)))
    w("")
    w("## Upstream token calls and refresh cycles")
    w("")
    wx = defaultdict(Counter)   # app -> reason -> n, over every instance run
    for values in metrics_last.values():
        for (app, kind, reason), n in values.items():
            if kind == "access_token":
                wx[app][reason] += n
    w("A refresh cycle is a new token that wxmp served (the driver saw each one: token GETs run "
      "many times a second on both instances). Classic `/cgi-bin/token` issues a token on every "
      "call, so its ok calls must equal the cycles. A stable app's passive refresh of its "
      "current token first asks in normal mode, which answers the same token, then forces a "
      "refresh (at most once per 30 s): that check is the only call that may bring no new "
      "token, besides a forced call WeChat ignores because it came within 30 s of the last one. "
      "The wxmp columns are counted from both instances' logs.")
    w("")
    w("| app | API | attempts | ok calls | of which forced | tokens issued | cycles (tokens served) "
      "| ok calls without a new token | wxmp: ok calls / normal-mode checks / forced within 30 s "
      "| passive refreshes of the current token: refreshed / not | wxmp fetches by reason (/metrics) |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    logged = wxmp_log_facts()
    verdicts = []
    for app, (appid, _sec, _tok, _key, _mode, api) in APPS.items():
        st = stats.get(appid, {}) if isinstance(stats, dict) else {}
        if api == "classic":
            calls = st.get("token_calls", {})
            issued = calls.get("ok", 0)
            forced = 0
        else:
            calls = st.get("stable_token_calls", {})
            issued = st.get("stable_tokens_issued", 0)
            forced = st.get("force_refresh_calls", {}).get("ok", 0)
        ok, attempts = calls.get("ok", 0), calls.get("attempts", 0)
        served = len(tokens_seen[app])
        unchanged = ok - issued
        lf = logged[app]
        explained = lf["normal-mode checks"] + lf["forced within 30 s"]
        w("| %s | %s | %d | %d | %d | %d | %d | %d | %d / %d / %d | %d / %d | %s |" % (
            app, api, attempts, ok, forced, issued, served, unchanged, lf["ok calls"],
            lf["normal-mode checks"], lf["forced within 30 s"],
            passive_current[(app, True)], passive_current[(app, False)],
            ", ".join("%s %d" % kv for kv in sorted(wx[app].items())) or "-"))
        good = issued == served and unchanged == explained and lf["ok calls"] == ok
        verdicts.append("%s: %d ok calls for %d refresh cycles; %d calls brought no new token, "
                        "explained by %d normal-mode checks and %d forced calls within 30 s of the "
                        "previous; %d failed attempts (injected -1) -> %s" % (
                            app, ok, served, unchanged, lf["normal-mode checks"],
                            lf["forced within 30 s"], attempts - ok, "OK" if good else "MISMATCH"))
    w("")
    for v in verdicts:
        w("- " + v)
    w("")
    w("## Webhook deliveries (exactly once)")
    w("")
    dups = {m: ts for m, ts in delivered.items() if len(ts) > 1}
    missing = [m for m in sent if m not in delivered]
    strays = [m for m in delivered if m not in sent]
    w("- unique MsgIds sent: %d; delivered: %d; delivered more than once: %d; missing: %d; "
      "delivered but never sent: %d" % (len(sent), sum(1 for m in sent if m in delivered),
                                         len(dups), len(missing), len(strays)))
    if dups:
        kinds = Counter()
        lines = []
        for m, ts in sorted(dups.items()):
            s = sent.get(m, {"reqs": []})
            insts = "".join(sorted({i for (_t, i, st) in s["reqs"] if st == 200}))
            down = windows.get("Redis down", [(1e18, 1e18)])[0]
            first, second = ts[0], ts[1]
            if first < down[0] and down[0] <= second <= down[1] + 1:
                label = "handled before the Redis outage, again during it"
            elif first < down[0] and second > down[1]:
                label = "handled before the Redis restart, again after it (data lost)"
            elif down[0] <= first <= down[1] + 1 and len(insts) > 1:
                label = "handled during the Redis outage, again on the other instance"
            elif down[0] <= first <= down[1] + 1 and second > down[1] + 1:
                label = "handled during the Redis outage, again after it"
            else:
                label = "UNEXPECTED (requests answered by %s)" % " and ".join(insts)
            kinds[label] += 1
            lines.append("  - MsgId %s (%s): requests at %s; delivered at %s" % (
                m, s.get("app"), ", ".join("%.1f %s %s" % (t - T_TRAFFIC, i, st) for (t, i, st) in s["reqs"]),
                ", ".join("%.1f" % (t - T_TRAFFIC) for t in ts)))
        w("- duplicates: " + "; ".join("%s: %d" % kv for kv in sorted(kinds.items())))
        w("")
        w("First duplicates (request time, instance, status):")
        w("")
        out.extend(lines[:15])
    if missing:
        w("")
        w("Missing:")
        w("")
        for m in missing[:30]:
            s = sent[m]
            w("  - MsgId %s (%s): requests at %s" % (
                m, s["app"], ", ".join("%.1f %s %s" % (t - T_TRAFFIC, i, st) for (t, i, st) in s["reqs"])))
    w("")
    return "\n".join(out)


# ---------------------------------------------------------------- main

T_TRAFFIC = 0.0


def main():
    global seal_proc, T_TRAFFIC
    for name in ("redis", "emu", "hook", "A", "B"):
        ports[name] = free_port()
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", ports["hook"]), Hook)
    hook.daemon_threads = True
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    seal_proc = subprocess.Popen([SEAL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, bufsize=1)
    start_redis()
    emu_args = [BIN, "emulator", "--listen", "127.0.0.1:%d" % ports["emu"],
                "--token-lifetime", str(TOKEN_LIFETIME), "--overlap", str(OVERLAP)]
    for appid, secret, *_ in APPS.values():
        emu_args += ["--app", "%s:%s" % (appid, secret)]
    start("emu", emu_args, "emulator.log")
    if not wait_port(ports["emu"]):
        raise SystemExit("the emulator did not start")
    write_config()
    start_instance("A")
    start_instance("B")
    log("redis :%d, emulator :%d, webhook :%d, A :%d (pid %d), B :%d (pid %d); logs in %s" % (
        ports["redis"], ports["emu"], ports["hook"], ports["A"], procs["A"].pid, ports["B"],
        procs["B"].pid, WORK))
    T_TRAFFIC = now()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
    threads += [threading.Thread(target=f, daemon=True)
                for f in (passive_current_loop, rss_loop, scrape_loop, fault_loop)]
    for t in threads:
        t.start()
    last = 0
    while now() - T_TRAFFIC < DURATION:
        time.sleep(1)
        if now() - last >= 60:
            last = now()
            with lock:
                n = sum(requests_by.values())
                bad = len(fivexx)
            log("%d requests so far, %d 5xx" % (n, bad))
    stop.set()
    log("traffic stopped; draining repeats and deliveries")
    client = Client()
    while True:
        r = due_repeat()
        if r is None:
            with lock:
                if not repeats:
                    break
            time.sleep(0.1)
            continue
        send_repeat(client, r)
    time.sleep(8)
    # A last RSS sample and metrics scrape.
    sample = {inst: (read_rss(procs[inst].pid), incarnation[inst]) for inst in "AB"}
    rss.append((now(), sample))
    scrape_once(client)
    text = report(final_stats())
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(REPORT)), exist_ok=True)
    with open(REPORT, "w") as f:
        f.write(text + "\n")
    log("report written to %s" % REPORT)


def cleanup():
    for name in ("A", "B", "emu", "redis"):
        p = procs.get(name)
        if p and p.poll() is None:
            p.terminate()
    for name in ("A", "B", "emu", "redis"):
        p = procs.get(name)
        if p:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    if seal_proc:
        seal_proc.kill()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        main()
    finally:
        cleanup()
