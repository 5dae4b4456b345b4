"""drfleet viewer: one page with every worker's live video stream, and a plot of how the run
trains (each completed iteration's mean reward and progress, from the metrics in its S3).

The browser talks only to this server. Streams come through SSH (a direct-tcpip channel on
the host's existing connection to the worker's published port), so no port on any host needs
to be open to the user's machine. The page follows workers as they come and go, shows a tile
as down when its stream breaks, and retries it by itself."""

from __future__ import annotations

import html
import ipaddress
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, TypeVar

from drfleet.errors import DrfleetError
from drfleet.hosts import agent_client
from drfleet.hosts.agent_client import HostStatus, reach
from drfleet.hosts.inventory import Host, Inventory
from drfleet.hosts.remote import Options, Session, SSHSession, fan_out, session
from drfleet.names import Run, slot_of
from drfleet.runs.observe import FleetReport, HostReport

T = TypeVar("T")

TOPICS = {
    "kvs_stream": "/racecar/deepracer/kvs_stream",
    "main_camera": "/racecar/main_camera/zed/rgb/image_rect_color",
    "sub_camera": "/sub_camera/zed/rgb/image_rect_color",
    "camera": "/racecar/camera/zed/rgb/image_rect_color",
}


def stream_path(topic: str, quality: int, width: int, height: int) -> str:
    query = urllib.parse.urlencode(
        {
            "topic": TOPICS.get(topic, TOPICS["kvs_stream"]),
            "quality": quality,
            "width": width,
            "height": height,
        },
        safe="/",
    )
    return f"/stream?{query}"


def pick_topic(wanted: str, published: list[str]) -> str:
    """The topic to show: the one asked for if the worker publishes it, else its best one
    (kvs_stream exists only with DR_CAMERA_KVS_ENABLE=True; the car camera always)."""
    if not published or wanted in published:
        return wanted
    return published[0]


def workers_from(
    report: FleetReport, inv: Inventory, run: Run | None = None
) -> list[dict[str, Any]]:
    """Every robomaker of the run (all runs': None) the agents know, and its evaluation, with
    where its video is (pure). `key` names its stream: the worker's slot, or "eval"."""
    out = []
    stacks = (run.stack, run.eval_stack) if run else None
    for host, r in report.hosts.items():
        for c in r.containers:
            if c.role not in ("robomaker", "evaluation"):
                continue
            if stacks is not None and c.stack not in stacks:
                continue
            slot = int(c.labels.get("drfleet-slot") or slot_of(c.name) or 0)
            out.append(
                {
                    "key": "eval" if c.role == "evaluation" else str(slot),
                    "role": c.role,
                    "slot": slot,
                    "host": host,
                    "address": inv.hosts[host].address,
                    "world": c.labels.get("drfleet-world", ""),
                    "state": c.state.value,
                    "restarts": c.restarts,
                    "port": c.ports.get("8080/tcp"),
                    "listens_on": c.addresses.get("8080/tcp", ""),
                    "topics": [t for t in c.labels.get("drfleet-topics", "").split(",") if t],
                }
            )
        if r.status is None:  # a host we cannot ask: its workers are unknown, show that
            out.append(
                {
                    "key": "",
                    "role": "",
                    "slot": 0,
                    "host": host,
                    "state": "unreachable",
                    "world": "",
                    "address": inv.hosts[host].address,
                    "restarts": 0,
                    "port": None,
                    "topics": [],
                }
            )
    return sorted(out, key=lambda w: (w["key"] in ("", "eval"), w["key"] == "", w["slot"]))


class Fresh(Generic[T]):
    """A value read again at most every `every` seconds, by one caller at a time (the
    others wait for it rather than read too)."""

    def __init__(self, read: Callable[[], T], every: float) -> None:
        self.read, self.every = read, every
        self.lock = threading.Lock()
        self.at: float | None = None
        self.value: T | None = None

    def get(self) -> T:
        with self.lock:
            if self.at is None or self.value is None or time.monotonic() - self.at >= self.every:
                self.value, self.at = self.read(), time.monotonic()
            return self.value


class Streams:
    """Long-lived connections to the hosts, the worker list (cached briefly), streams."""

    def __init__(
        self,
        inv: Inventory,
        options: Options,
        progress: Callable[[], dict[str, Any]] | None = None,
        run: Run | None = None,
    ) -> None:
        self.inv = inv
        self.run = run
        self.options = options
        self.hosts = [h for h in inv.hosts.values() if h.roles]
        self.sessions: dict[str, Session] = {h.name: session(h, options) for h in self.hosts}
        self._workers = Fresh(self._read_workers, 1.5)
        self._progress = Fresh(progress or (lambda: {"error": "the viewer knows no run"}),
                               PROGRESS_EVERY)  # fmt: skip

    def workers(self) -> list[dict[str, Any]]:
        return self._workers.get()

    def progress(self) -> dict[str, Any]:
        """The run's progress per iteration, read at most every PROGRESS_EVERY seconds."""
        return self._progress.get()

    def _read_workers(self) -> list[dict[str, Any]]:
        def one(host: Host) -> HostStatus:
            return agent_client.status(self.sessions[host.name], timeout=20)

        report = FleetReport({})
        for o in fan_out(self.hosts, one):
            if o.error:
                report.hosts[o.host.name] = HostReport(o.host.name, False, None, o.error.message)
                self._reset(o.host.name)
            else:
                report.hosts[o.host.name] = HostReport(o.host.name, True, o.value)
        return workers_from(report, self.inv, self.run)

    def _reset(self, host: str) -> None:
        old = self.sessions[host]
        old.close()
        self.sessions[host] = session(self.inv.hosts[host], self.options)

    def open(self, host: str, address: str, port: int) -> Any:
        """A socket-like connection to address:port as the host sees it."""
        sess = self.sessions[host]
        if isinstance(sess, SSHSession):
            return sess.channel(address, port)
        return socket.create_connection((address, port), timeout=10)

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()


PROGRESS_EVERY = 5.0  # seconds between reads of the run's metrics
MAX_STREAMS = 64  # at once, over all workers: each is a thread and an SSH channel
MAX_STREAMS_PER_WORKER = 8
IDLE_TIMEOUT = 30.0  # seconds a client or a worker may stay silent


def host_allowed(header: str | None, bind: str) -> bool:
    """Whether a request's Host names this server as the user reaches it: an IP address,
    localhost, or the name it was bound to. A DNS name pointing here (DNS rebinding: a web
    page that makes its own name resolve to 127.0.0.1) is not."""
    if not header:
        return False
    name = urllib.parse.urlsplit(f"//{header}").hostname or ""
    if name in ("localhost", bind.lower()):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Slots:
    """Counts streams open at once, overall and per worker."""

    def __init__(self, overall: int = MAX_STREAMS, per: int = MAX_STREAMS_PER_WORKER) -> None:
        self.overall, self.per = overall, per
        self.open: dict[str, int] = {}
        self.lock = threading.Lock()

    def take(self, slot: str) -> bool:
        with self.lock:
            if sum(self.open.values()) >= self.overall or self.open.get(slot, 0) >= self.per:
                return False
            self.open[slot] = self.open.get(slot, 0) + 1
            return True

    def give(self, slot: str) -> None:
        with self.lock:
            self.open[slot] -= 1


def make_handler(streams: Streams, bind: str = "127.0.0.1") -> type[BaseHTTPRequestHandler]:
    slots = Slots()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"
        timeout = IDLE_TIMEOUT

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if not host_allowed(self.headers.get("Host"), bind):
                self._send(403, "text/plain", b"this Host is not the viewer's\n")
                return
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/":
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif url.path == "/api/workers":
                self._send(200, "application/json", json.dumps(streams.workers()).encode())
            elif url.path == "/api/progress":
                self._send(200, "application/json", json.dumps(streams.progress()).encode())
            elif url.path.startswith("/stream/"):
                self._stream(url)
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, url: urllib.parse.SplitResult) -> None:
            key = url.path.rsplit("/", 1)[-1]
            q = dict(urllib.parse.parse_qsl(url.query))
            worker = next((w for w in streams.workers() if key and w["key"] == key), None)
            if worker is None or not worker["port"] or worker["state"] != "running":
                self._send(503, "text/plain", b"worker is not running\n")
                return
            path = stream_path(
                pick_topic(q.get("topic", "kvs_stream"), worker.get("topics") or []),
                _int(q, "quality", 75, 1, 100),
                _int(q, "width", 480, 16, 1920),
                _int(q, "height", 360, 16, 1080),
            )
            if not slots.take(key):
                self._send(503, "text/plain", b"too many streams open; close some tabs\n")
                return
            try:
                self._relay(worker, path)
            finally:
                slots.give(key)

        def _relay(self, worker: dict[str, Any], path: str) -> None:
            try:
                upstream = streams.open(
                    worker["host"], reach(worker.get("listens_on") or ""), int(worker["port"])
                )
            except Exception as exc:
                self._send(502, "text/plain", f"cannot reach the worker: {exc}\n".encode())
                return
            try:
                upstream.settimeout(IDLE_TIMEOUT)
                upstream.sendall(f"GET {path} HTTP/1.0\r\nHost: worker\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                    chunk = upstream.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                head, _, rest = head.partition(b"\r\n\r\n")
                boundary = mjpeg_boundary(head)
                if boundary is None:
                    self._send(502, "text/plain", b"the worker's video did not answer as one\n")
                    return
                # the page's origin says what its bytes are, never a worker
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={boundary}")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(rest)
                while chunk := upstream.recv(1 << 16):
                    self.wfile.write(chunk)
            except (OSError, EOFError):
                pass
            finally:
                upstream.close()

    return Handler


MAX_HEAD = 16384
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=?-]{1,70}")  # RFC 2046's bchars, no space


def mjpeg_boundary(head: bytes) -> str | None:
    """The boundary of a worker's MJPEG answer (web_video_server's multipart_stream.cpp:
    200, `Content-type: multipart/x-mixed-replace;boundary=boundarydonotcross`), or None
    when it is anything else: the viewer sends its own headers, never the worker's."""
    lines = head.decode("latin-1").split("\r\n")
    if len(lines[0].split()) < 2 or lines[0].split()[1] != "200":
        return None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() != "content-type":
            continue
        kind, _, params = value.strip().partition(";")
        if kind.strip().lower() != "multipart/x-mixed-replace":
            return None
        for param in params.split(";"):
            key, _, b = param.strip().partition("=")
            b = b.strip().strip('"')
            if key.strip().lower() == "boundary" and BOUNDARY.fullmatch(b):
                return b
        return None
    return None


def _int(q: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(q.get(key, default))))
    except ValueError:
        return default


def serve(
    inv: Inventory,
    options: Options,
    bind: str,
    port: int,
    ready: Callable[[str, list[dict[str, Any]]], None],
    progress: Callable[[], dict[str, Any]] | None = None,
    run: Run | None = None,
) -> None:
    """Serves the page until interrupted; ready(url, workers) once it listens. progress:
    reads the run's progress per iteration, which the page plots; run: whose workers and
    evaluation it shows (None: every run's)."""
    streams = Streams(inv, options, progress, run)
    server = ThreadingHTTPServer((bind, port), make_handler(streams, bind))
    server.daemon_threads = True
    host = f"[{bind}]" if ":" in bind else bind
    ready(f"http://{host}:{server.server_address[1]}/", streams.workers())
    try:
        server.serve_forever()
    finally:
        server.server_close()
        streams.close()


def title(w: dict[str, Any]) -> str:
    return "evaluation" if w.get("key") == "eval" else f"worker {int(w['slot'])}"


def direct(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workers as a browser elsewhere reaches them: their video must listen beyond the
    host's loopback (publish_address in the inventory); the URL names the address it listens
    on, or the host's address when it listens on all of them (pure)."""
    shut = [
        w
        for w in workers
        if w["port"] and ipaddress.ip_address(w["listens_on"] or "127.0.0.1").is_loopback
    ]
    if shut:
        names = ", ".join(f"{title(w)} on {w['host']}" for w in shut)
        raise DrfleetError(
            f"the video of {names} listens on the host's 127.0.0.1 only, so a page that "
            "reaches hosts directly cannot show it",
            fix="use `drfleet viewer` (streams come through SSH), or set publish_address: "
            "0.0.0.0 for those hosts in the inventory and train again (the streams have no "
            "authentication: only on a network you trust)",
        )
    out = []
    for w in workers:
        listens = w.get("listens_on") or ""
        wild = not listens or ipaddress.ip_address(listens).is_unspecified
        out.append({**w, "address": w["address"] if wild else listens})
    return out


def static_page(
    workers: list[dict[str, Any]],
    topic: str = "kvs_stream",
    quality: int = 75,
    width: int = 480,
    height: int = 360,
) -> str:
    """A standalone page for browsers that reach the hosts directly (DRfC's local browser)."""

    def path(w: dict[str, Any]) -> str:
        return stream_path(pick_topic(topic, w.get("topics") or []), quality, width, height)

    tiles = "\n".join(
        f'<figure><img src="http://{html.escape(_url_host(w["address"]))}:{int(w["port"])}'
        f'{html.escape(path(w))}" width="{width}" height="{height}" alt="{title(w)}">'
        f"<figcaption>{title(w)} on {html.escape(w['host'])}: "
        f"{html.escape(w['world'])}</figcaption></figure>"
        for w in workers
        if w["port"]
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>DeepRacer workers"
        f"</title><style>body{{background:#111;color:#eee;font-family:sans-serif}}"
        f"figure{{display:inline-block;margin:6px}}</style></head><body>{tiles}"
        f"</body></html>\n"
    )


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def write_static(path: Path, workers: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(static_page(workers))
    tmp.replace(path)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>drfleet: DeepRacer workers</title>
<style>
 body { background:#111; color:#eee; font-family:sans-serif; margin:12px }
 header { margin-bottom:10px } select, input { margin-right:12px }
 #tiles { display:flex; flex-wrap:wrap; gap:10px }
 .tile { background:#222; padding:6px; border-radius:6px; position:relative }
 .tile img { display:block; background:#000 }
 .tile .cap { font-size:14px; margin-top:4px }
 .tile.down img { opacity:0.25 } .tile.down .cap::after { content:" - down"; color:#f66 }
 #plot { background:#222; border-radius:6px; padding:6px; margin-bottom:10px }
 #plot svg { display:block } #plot .note { font-size:13px; color:#aaa }
 .reward { stroke:#6cf; fill:#6cf } .progress { stroke:#fc6; fill:#fc6 }
 #plot text { fill:#ccc; font-size:11px; stroke:none }
</style></head><body>
<header>
 camera <select id="topic">
  <option value="kvs_stream">kvs_stream</option><option value="main_camera">main camera</option>
  <option value="sub_camera">sub camera</option><option value="camera">camera</option></select>
 quality <input id="quality" type="number" min="1" max="100" value="75" size="3">
 width <select id="width"><option>320</option><option selected>480</option>
  <option>640</option></select>
 <span id="summary"></span>
</header>
<div id="plot"><span class="note" id="plotnote">training progress: waiting for the first
 iteration</span><svg id="chart" width="720" height="200"></svg></div>
<div id="tiles"></div>
<script>
// reward (left axis) and progress % (right axis) of each completed iteration
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function draw(its) {
  const svg = document.getElementById("chart"); svg.replaceChildren();
  const W = 720, H = 200, L = 50, R = 50, T = 10, B = 25;
  const n = Math.max(its.length, 2);
  const rs = its.map(i => i.reward);
  let lo = Math.min(0, ...rs), hi = Math.max(1, ...rs);
  const x = k => L + (W - L - R) * (k - 1) / (n - 1);
  const yr = v => H - B - (H - B - T) * (v - lo) / (hi - lo);
  const yp = v => H - B - (H - B - T) * v / 100;
  svg.append(el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#555"}));
  const label = (x, y, text) => svg.append(el("text", {x: x, y: y}, text));
  label(4, T + 10, hi.toFixed(0)); label(4, H - B, lo.toFixed(0));
  label(W - R + 6, T + 10, "100%"); label(W - R + 6, H - B, "0%");
  label(L, H - 6, "iteration 1"); label(W - R - 60, H - 6, `iteration ${n}`);
  for (const [cls, y, key] of [["reward", yr, "reward"], ["progress", yp, "progress"]]) {
    svg.append(el("polyline", {class: cls, fill: "none", "stroke-width": 2,
      points: its.map(i => `${x(i.iteration)},${y(i[key])}`).join(" ")}));
    for (const i of its)
      svg.append(el("circle", {class: cls + " point", r: 3, cx: x(i.iteration), cy: y(i[key]),
        "data-iteration": i.iteration, "data-value": i[key]}));
  }
}
async function plot() {
  let p = {};
  try { p = await (await fetch("/api/progress")).json(); } catch (e) { return; }
  const note = document.getElementById("plotnote");
  if (p.error) { note.textContent = `training progress: ${p.error}`; return; }
  const its = p.iterations || [];
  const last = its[its.length - 1];
  note.textContent = last
    ? `${p.prefix}: ${its.length} iterations; last mean reward ${last.reward} (blue), ` +
      `progress ${last.progress}% (amber)`
    : `${p.prefix}: waiting for the first iteration`;
  draw(its);
}
const tiles = document.getElementById("tiles");
function settings() {
  const w = +document.getElementById("width").value;
  return {topic: document.getElementById("topic").value,
          quality: document.getElementById("quality").value, width: w,
          height: Math.round(w * 3 / 4)};
}
function src(key) {
  const s = settings();
  return `/stream/${key}?topic=${s.topic}&quality=${s.quality}&width=${s.width}` +
         `&height=${s.height}&t=${Date.now()}`;
}
function tile(w) {
  let t = document.getElementById("w" + w.key);
  if (!t) {
    t = document.createElement("div"); t.className = "tile down"; t.id = "w" + w.key;
    t.dataset.slot = w.key;
    const img = document.createElement("img");
    img.onload = () => { t.classList.remove("down"); t.dataset.live = "1"; };
    img.onerror = () => { t.classList.add("down"); t.dataset.live = "0"; };
    const cap = document.createElement("div"); cap.className = "cap";
    t.append(img, cap); tiles.append(t);
  }
  return t;
}
function size(t) {
  const s = settings(); const img = t.querySelector("img");
  img.width = s.width; img.height = s.height;
}
async function refresh() {
  let ws = [];
  try { ws = await (await fetch("/api/workers")).json(); } catch (e) { return; }
  const seen = new Set();
  for (const w of ws.filter(w => w.key)) {
    seen.add("w" + w.key);
    const t = tile(w); size(t);
    t.querySelector(".cap").textContent = (w.key === "eval" ? "evaluation" : `worker ${w.slot}`) +
      ` on ${w.host}: ${w.world} (${w.state}, restarts ${w.restarts})`;
    const img = t.querySelector("img");
    const running = w.state === "running";
    if (!running) { t.classList.add("down"); t.dataset.live = "0"; img.removeAttribute("src"); }
    else if (!img.getAttribute("src") || t.classList.contains("down")) { img.src = src(w.key); }
  }
  for (const t of [...tiles.children]) if (!seen.has(t.id)) t.remove();
  const evals = ws.filter(w => w.key === "eval").length;
  document.getElementById("summary").textContent =
    `${seen.size - evals} workers` + (evals ? " and the evaluation" : "");
}
for (const id of ["topic", "quality", "width"])
  document.getElementById(id).onchange = () => {
    for (const t of tiles.children) t.querySelector("img").removeAttribute("src");
    refresh();
  };
// a stream that stalls without an error also counts as down: watch the decoded size
setInterval(() => {
  for (const t of tiles.children) {
    const img = t.querySelector("img");
    if (img.naturalWidth > 0 && !t.classList.contains("down")) t.dataset.live = "1";
  }
}, 1000);
refresh(); setInterval(refresh, 2000);
plot(); setInterval(plot, 5000);
</script></body></html>
"""
