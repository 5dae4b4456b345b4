"""What EC2 says ahead of ending this instance, read from its instance metadata (IMDSv2):

- a spot interruption notice, `meta-data/spot/instance-action`: 404 until EC2 decides to
  interrupt, then `{"action": "terminate" | "stop" | "hibernate", "time": "<UTC>"}` about two
  minutes ahead (EC2 user guide, "Spot Instance interruption notices"; AWS advises asking
  every 5 seconds);
- a rebalance recommendation, `meta-data/events/recommendations/rebalance`: 404 until the
  instance is at elevated risk, then `{"noticeTime": "<UTC>"}` ("EC2 instance rebalance
  recommendations"), often well before a notice.

Asked as botocore's InstanceMetadataFetcher asks (utils.py): PUT latest/api/token with
X-aws-ec2-metadata-token-ttl-seconds, then GETs with X-aws-ec2-metadata-token; a 401 means the
token expired and a new one is fetched. Only hosts told they are EC2 instances ask (`run
--ec2-notices`): on another cloud the same address answers for that cloud."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("drfleet-agent")

ADDRESS = "169.254.169.254"
TOKEN_TTL = 21600  # seconds, IMDSv2's longest
INTERVAL = 5.0  # while the metadata answers (AWS's advice)
RETRY = 30.0  # while it does not


class MetadataError(Exception):
    pass


@dataclass(frozen=True)
class Notices:
    """The latest answer: interruption {action, time} or None; rebalance (its noticeTime) or
    None; error: why the metadata could not be read last time ("" when it could)."""

    interruption: dict[str, str] | None = None
    rebalance: str | None = None
    error: str = ""
    checked_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "interruption": self.interruption,
            "rebalance": self.rebalance,
            "error": self.error,
            "checked_at": self.checked_at,
        }


def interruption(body: bytes) -> dict[str, str]:
    """A spot/instance-action document as the controller reads it (pure): action and time."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or "action" not in doc:
        raise MetadataError(f"spot/instance-action without an action: {body[:200]!r}")
    return {"action": str(doc["action"]), "time": str(doc.get("time") or "")}


def rebalance(body: bytes) -> str:
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise MetadataError(f"a rebalance recommendation that is not an object: {body[:200]!r}")
    return str(doc.get("noticeTime") or "")


class Metadata:
    """IMDSv2 at `address`:`port`, its token kept until shortly before it expires."""

    def __init__(
        self,
        address: str = ADDRESS,
        port: int = 80,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address, self.port, self.timeout, self.clock = address, port, timeout, clock
        self.token: str | None = None
        self.token_until = 0.0

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, headers=headers)
            res = conn.getresponse()
            return res.status, res.read(65536)
        except OSError as exc:
            raise MetadataError(f"no instance metadata at {self.address}: {exc}") from None
        finally:
            conn.close()

    def _token(self) -> str:
        if self.token and self.clock() < self.token_until:
            return self.token
        code, body = self._request(
            "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)}
        )
        if code != 200:
            raise MetadataError(f"the instance metadata refused a token (HTTP {code})")
        self.token, self.token_until = body.decode().strip(), self.clock() + TOKEN_TTL - 60
        return self.token

    def get(self, path: str) -> bytes | None:
        """The document at latest/meta-data/<path>; None when there is none (404)."""
        for _ in range(2):
            code, body = self._request(
                "GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": self._token()}
            )
            if code == 401:  # the token expired (or the service restarted): a new one
                self.token = None
                continue
            if code == 404:
                return None
            if code != 200:
                raise MetadataError(f"the instance metadata answered {path} with HTTP {code}")
            return body
        raise MetadataError("the instance metadata refused a fresh token")

    def notices(self) -> Notices:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            action = self.get("spot/instance-action")
            advice = self.get("events/recommendations/rebalance")
            return Notices(
                interruption(action) if action else None,
                rebalance(advice) if advice else None,
                checked_at=now,
            )
        except (MetadataError, ValueError) as exc:
            return Notices(error=str(exc), checked_at=now)


class Watcher:
    """Asks every INTERVAL seconds (RETRY while the metadata does not answer) in a thread of
    its own; `changed` is called when what it says changes, so the agent writes its status at
    once rather than at its next periodic pass."""

    def __init__(self, metadata: Metadata, changed: Callable[[], None]) -> None:
        self.metadata, self.changed = metadata, changed
        self.latest = Notices()
        self.stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="ec2-notices", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            got = self.metadata.notices()
            before, self.latest = self.latest, got
            said = (got.interruption, got.rebalance, got.error)
            if said != (before.interruption, before.rebalance, before.error):
                self._log(got)
                self.changed()
            self.stopping.wait(RETRY if got.error else INTERVAL)

    @staticmethod
    def _log(got: Notices) -> None:
        if got.interruption:
            log.warning(
                "EC2 spot interruption notice: %s at %s",
                got.interruption["action"],
                got.interruption["time"],
            )
        elif got.rebalance:
            log.warning("EC2 rebalance recommendation since %s", got.rebalance)
        elif got.error:
            log.warning("%s; asking again every %d s", got.error, RETRY)
