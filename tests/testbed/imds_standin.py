"""EC2's instance metadata service (IMDSv2) for a test-bed host, run on the host as a plain
python3 process (stdlib only: Debian's and Ubuntu's python3 run it as copied) on
169.254.169.254:80, the address on the host's lo, as the hypervisor answers it on a real
instance: the host and its containers reach it, nothing else does.

What it serves, and where each behaviour comes from:
- PUT latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1-21600, else 400), a
  request carrying X-Forwarded-For refused (403): EC2 user guide, "Use IMDSv2"
  (configuring-instance-metadata-service.html); botocore's InstanceMetadataFetcher asks so.
- every GET needs a live token, else 401, as on an instance with HttpTokens=required (what
  `drfleet up` launches); an unknown path is 404.
- meta-data/instance-id, meta-data/instance-life-cycle (spot | on-demand),
  meta-data/iam/security-credentials/ and .../<role> (AccessKeyId, SecretAccessKey, Token,
  Expiration, Code, Type) when the instance has a role: "Instance metadata categories".
- meta-data/spot/instance-action: 404 until an interruption is sent, then
  {"action": "terminate", "time": "YYYY-MM-DDThh:mm:ssZ"}; meta-data/events/recommendations/
  rebalance: 404 until then, then {"noticeTime": ...} ("Spot Instance interruption notices",
  "EC2 instance rebalance recommendations"). A test sends them as AWS FIS's
  aws:ec2:send-spot-instance-interruptions does (`send_interruption`): the rebalance
  recommendation and the notice together, the action two minutes on. The files under
  --notices hold them, so a test writes them through the host's shell. Not as AWS: FIS
  refuses a durationBeforeInterruption under two minutes, and EC2 always gives two; the
  tests pass a shorter `lead` to keep the suite fast, which only shortens the wait.

Run: python3 imds_standin.py --notices DIR [--address A] [--port P]; the instance is
described by IMDS_INSTANCE_ID, IMDS_LIFE_CYCLE, and IMDS_ROLE/IMDS_KEY/IMDS_SECRET."""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path

SPOT_ACTION = "spot-instance-action"
REBALANCE = "rebalance"
NOTICES = "/run/drfleet-imds"  # on the host: where a test writes the notices
ON_HOST = "/root/imds_standin.py"


def install(run: Callable[[str], object], env: dict[str, str]) -> None:
    """Starts the stand-in on a host; run(cmd) runs a shell command there as root. It answers
    before this returns."""
    script = base64.b64encode(Path(__file__).read_bytes()).decode()
    values = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    run(
        f"echo {script} | base64 -d > {ON_HOST} && mkdir -p {NOTICES} && "
        "{ ip addr add 169.254.169.254/32 dev lo 2>/dev/null || true; } && "
        f"{values} setsid python3 {ON_HOST} --notices {NOTICES} > /root/imds.log 2>&1 "
        f"< /dev/null & python3 -c {shlex.quote(READY)}"
    )


READY = """import socket, time
for _ in range(100):
    try:
        socket.create_connection(("169.254.169.254", 80), 1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("the IMDS stand-in did not start: " + open("/root/imds.log").read())
"""


def remove(run: Callable[[str], object]) -> None:
    run(
        f"pkill -f '{ON_HOST}'; ip addr del 169.254.169.254/32 dev lo; "
        f"rm -rf {ON_HOST} {NOTICES} /root/imds.log; true"
    )


def interrupt(run: Callable[[str], object], lead: float = 120.0) -> dict[str, str]:
    """Sends a host both notices (send_interruption); returns the interruption's document."""
    return send_interruption(
        lambda path, text: run(f"echo {shlex.quote(text)} > {shlex.quote(path)}"), NOTICES, lead
    )


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def interruption_files(now: float, lead: float = 120.0) -> dict[str, str]:
    """The two documents FIS's send-spot-instance-interruptions makes the instance serve."""
    return {
        REBALANCE: json.dumps({"noticeTime": utc(now)}),
        SPOT_ACTION: json.dumps({"action": "terminate", "time": utc(now + lead)}),
    }


def send_interruption(write, notices_dir: str, lead: float = 120.0) -> dict[str, str]:
    """Sends both notices to a host: write(path, text) writes a file there."""
    files = interruption_files(time.time(), lead)
    for name, text in files.items():
        write(f"{notices_dir}/{name}", text)
    return json.loads(files[SPOT_ACTION])


class Metadata:
    def __init__(self, notices: Path, env: dict[str, str]) -> None:
        self.notices = notices
        self.tokens: dict[str, float] = {}
        self.lock = threading.Lock()
        self.fixed = {
            "instance-id": env.get("IMDS_INSTANCE_ID", "i-0standin0000000"),
            "instance-life-cycle": env.get("IMDS_LIFE_CYCLE", "on-demand"),
        }
        if env.get("IMDS_KEY"):
            role = env.get("IMDS_ROLE", "deepracer-host")
            creds = "iam/security-credentials/"
            self.fixed[creds] = role
            self.fixed[creds + role] = json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": env["IMDS_KEY"],
                    "SecretAccessKey": env["IMDS_SECRET"],
                    "Token": "imds-session-" + secrets.token_hex(8),
                    "Expiration": utc(time.time() + 6 * 3600),
                }
            )

    def token(self, ttl: str | None, forwarded: bool) -> tuple[int, str]:
        if forwarded:
            return 403, ""
        if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return 400, ""
        made = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[made] = time.monotonic() + int(ttl)
        return 200, made

    def get(self, token: str | None, path: str) -> tuple[int, str]:
        with self.lock:
            if token is None or self.tokens.get(token, 0) < time.monotonic():
                return 401, ""
        if not path.startswith("/latest/meta-data/"):
            return 404, ""
        item = path[len("/latest/meta-data/") :]
        if item in self.fixed:
            return 200, self.fixed[item]
        files = {"spot/instance-action": SPOT_ACTION, "events/recommendations/rebalance": REBALANCE}
        if item in files:
            f = self.notices / files[item]
            return (200, f.read_text()) if f.exists() else (404, "")
        return 404, ""


def serve(address: str, port: int, metadata: Metadata) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            if self.path != "/latest/api/token":
                return self.answer(404, "")
            return self.answer(
                *metadata.token(
                    self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"),
                    "X-Forwarded-For" in self.headers,
                )
            )

        def do_GET(self) -> None:
            self.answer(*metadata.get(self.headers.get("X-aws-ec2-metadata-token"), self.path))

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer((address, port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="169.254.169.254")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--notices", required=True)
    args = ap.parse_args()
    Path(args.notices).mkdir(parents=True, exist_ok=True)
    serve(args.address, args.port, Metadata(Path(args.notices), dict(os.environ))).serve_forever()


if __name__ == "__main__":
    main()
