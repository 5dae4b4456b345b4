"""DeepRacer on AWS, asked: its site's env.js, the Cognito login (user pool, then identity
pool) with the keys cached in ~/.droa-cache as DRfC's auth.py caches them (0600 files, a 0700
folder), the API's requests signed for execute-api, and the uploads to its bucket. AWS is
reached as boto3 reaches it (AWS_ENDPOINT_URL and AWS_CA_BUNDLE honoured); the site and the
presigned URLs over HTTPS with the system's authorities and AWS_CA_BUNDLE's."""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.store import droa

Say = Callable[[str], None]


def _context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        ctx.load_verify_locations(bundle)
    return ctx


def _https(url: str) -> None:
    if not url.startswith("https://"):
        raise DrfleetError(f"not an https:// address: {url.split('?', 1)[0]}")


def fetch(url: str, method: str = "GET", data: bytes | None = None, headers: Any = None) -> Any:
    """(status, body) of an HTTPS request; an address that does not answer is an error."""
    _https(url)
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=60, context=_context()) as r:  # noqa: S310
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DrfleetError(f"cannot reach it ({reason})", where=url.split("?", 1)[0]) from e


def site(url: str) -> droa.Site:
    if not url.startswith("https://"):
        raise DrfleetError(f"DR_DROA_URL {url!r} is not an https:// address", fix=droa.URL_FIX)
    code, body = fetch(url.rstrip("/") + "/env.js")
    if code != 200:
        raise DrfleetError(f"answered {code}", where=f"{url}/env.js", fix=droa.URL_FIX)
    return droa.site(url, body.decode("utf-8", "replace"))


def _cognito_error(e: Any, username: str, s: droa.Site) -> DrfleetError:
    err = e.response.get("Error", {})
    code, message = err.get("Code", ""), err.get("Message", str(e))
    if code in ("NotAuthorizedException", "UserNotFoundException"):
        return DrfleetError(
            f"DRoA refused the login of {username}: {message}",
            fix="check DR_DROA_USERNAME (or --username) and the password",
        )
    if code == "UserNotConfirmedException":
        return DrfleetError(
            f"{username} is not confirmed in DRoA yet", fix=f"confirm the account at {s.url}"
        )
    return DrfleetError(f"DRoA's login failed: {code}: {message}")


class Session:
    """A login to one DRoA site: its keys and where they are cached."""

    def __init__(self, s: droa.Site, creds: droa.Credentials, cache: Path | None) -> None:
        self.site, self.creds, self.cache = s, creds, cache
        self.debug = bool(os.environ.get("DR_DROA_DEBUG"))

    @staticmethod
    def open(
        s: droa.Site, username: str, password: Callable[[], str], cache_dir: Path, say: Say
    ) -> Session:
        path = cache_dir / droa.cache_name(s.identity_pool_id, username)
        if path.is_file():
            creds = droa.cached(path.read_text(), datetime.now(timezone.utc))
            if creds is not None:
                say("using cached credentials")
                return Session(s, creds, path)
        creds = login(s, username, password())
        save(cache_dir, path, creds)
        return Session(s, creds, path)

    def forget(self) -> None:
        if self.cache is not None:
            self.cache.unlink(missing_ok=True)

    def call(
        self, method: str, path: str, query: Any = None, body: Any = None, fix: str | None = None
    ) -> Any:
        """A request of the API, signed; its JSON answer, or the API's refusal as an error
        (fix: what to do when it answers 404)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.site.api + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        req = AWSRequest(method=method, url=url, data=data, headers=headers)
        c = self.creds
        keys = Credentials(c.access_key, c.secret_key, c.session_token)
        SigV4Auth(keys, "execute-api", self.site.region).add_auth(req)
        if self.debug:  # DR_DROA_DEBUG, DRfC's switch: the request, never a key or token
            print(f"DRoA: {method} {url.split('?', 1)[0]}", file=sys.stderr)
        status, raw = fetch(url, method, data or None, dict(req.headers.items()))
        try:
            doc = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            doc = {"message": raw.decode("utf-8", "replace")[:200]}
        if status < 300:
            return doc
        message = doc.get("message") or doc.get("Message") or raw.decode("utf-8", "replace")
        if status == 403:
            self.forget()  # keys DRoA no longer takes: the next command logs in anew
            raise DrfleetError(
                f"DRoA refused the request: {message}",
                fix="run the command again to log in anew",
            )
        if status == 404:
            raise DrfleetError(f"DRoA: {message}", fix=fix)
        raise DrfleetError(f"DRoA answered {status}: {message}", where=f"{method} {path}")

    def s3(self) -> Any:
        import boto3

        c = self.creds
        return boto3.client(
            "s3",
            region_name=self.site.region,
            aws_access_key_id=c.access_key,
            aws_secret_access_key=c.secret_key,
            aws_session_token=c.session_token,
        )


def login(s: droa.Site, username: str, password: str) -> droa.Credentials:
    """auth.py's flow: USER_PASSWORD_AUTH for an ID token, then the identity pool's keys."""
    import boto3
    from botocore.exceptions import ClientError

    idp = boto3.client("cognito-idp", region_name=s.region)
    try:
        r = idp.initiate_auth(
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
            ClientId=s.client_id,
        )
    except ClientError as e:
        raise _cognito_error(e, username, s) from None
    if r.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
        raise DrfleetError(
            f"{username} still has DRoA's temporary password",
            fix=f"sign in once at {s.url} and choose your own password",
        )
    token = (r.get("AuthenticationResult") or {}).get("IdToken")
    if not token:
        raise DrfleetError(f"DRoA's login asked for {r.get('ChallengeName', 'more')}: not served")
    ci = boto3.client("cognito-identity", region_name=s.region)
    logins = {f"cognito-idp.{s.region}.amazonaws.com/{s.user_pool_id}": token}
    try:
        identity = ci.get_id(IdentityPoolId=s.identity_pool_id, Logins=logins)["IdentityId"]
        got = ci.get_credentials_for_identity(IdentityId=identity, Logins=logins)
    except ClientError as e:
        err = e.response.get("Error", {})
        raise DrfleetError(
            f"DRoA's identity pool gave {username} no keys: {err.get('Code')}: "
            f"{err.get('Message')}",
            fix="ask the DRoA admin to put the account in a group (dr-racers)",
        ) from None
    c = got["Credentials"]
    expiry = c["Expiration"]
    if not isinstance(expiry, datetime):
        expiry = datetime.fromtimestamp(float(expiry), timezone.utc)
    return droa.Credentials(c["AccessKeyId"], c["SecretKey"], c["SessionToken"], expiry)


def save(cache_dir: Path, path: Path, creds: droa.Credentials) -> None:
    """The keys to a 0600 file (written whole, then renamed) in a 0700 folder."""
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache_dir.chmod(0o700)
    part = path.with_name(f".{path.name}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(droa.cache_text(creds))
    os.replace(part, path)


def download(url: str, out: Path, tick: Say | None = None) -> int:
    """A presigned URL to out, streamed in 1 MiB pieces, whole or not at all; its size."""
    _https(url)
    part = out.with_name(f".{out.name}.part")
    size = 0
    try:
        req = urllib.request.Request(url)  # noqa: S310
        opened = urllib.request.urlopen(req, timeout=60, context=_context())  # noqa: S310
        with opened as r, open(part, "wb") as fh:
            while chunk := r.read(1 << 20):
                fh.write(chunk)
                size += len(chunk)
                if tick:
                    tick(f"{size} bytes")
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise DrfleetError(f"the download failed: {e.code}", where=url.split("?", 1)[0]) from e
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise DrfleetError(f"the download failed ({e})", where=url.split("?", 1)[0]) from e
    os.replace(part, out)
    return size
