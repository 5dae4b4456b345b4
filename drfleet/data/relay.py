"""drfleet's image relay, run on a host by the controller (python3 -S, standard library only).

`run DIR` reads a `docker save` archive on stdin and feeds it to this host's `docker load` and,
at the same time, over SSH to the next host's relay (whose forced command is `run` again), so
the controller sends one copy into the fleet and each host passes it on while it loads. It
prints JSON lines: its own progress and result, and the next hosts' lines as they come back.
Nothing listens: the next hop is an SSH login with a key made for this transfer, whose entry in
the next host's authorized_keys is restricted to that command and expires, against that host's
key as the controller verified it.

`prepare DIR KEY?` (after the controller wrote this file into a fresh DIR): removes what earlier
transfers left (their keys' entries expire anyway), makes the key for the next hop when asked,
and prints the public key and the expiry for the next host's entry.
`setup DIR` takes the transfer's settings on stdin: the next hop, its host key, and the
authorized_keys entry that lets the previous host in.
`cleanup DIR` removes DIR and that entry (the controller runs it from stdin, `python3 -S -`:
DIR may be gone). `run` does the same itself: its entry at once (the key lets one connection
in), the rest when it ends, so a transfer cut short by a killed controller leaves nothing.
"""

import contextlib
import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time

MARK = "drfleet-relay:"
PREFIX = "/tmp/drfleet-relay."
CHUNK = 1 << 20


def authorized_keys():
    return os.path.expanduser("~/.ssh/authorized_keys")


@contextlib.contextmanager
def keys_locked():
    """Every edit of authorized_keys by a relay holds this lock: two transfers at once (or a
    relay's own clean-up beside another's setup) never lose each other's lines."""
    ssh = os.path.dirname(authorized_keys())
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(ssh, ".drfleet-relay.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def one_line(text, what):
    """text, refused if it holds a line break (or NUL): one line of authorized_keys or
    known_hosts must never become two, the second unrestricted."""
    if not isinstance(text, str) or any(c in text for c in "\r\n\x00\x0b\x0c\x85\u2028\u2029"):
        sys.exit("drfleet-relay: refused: the %s is not one line" % what)
    return text


def rewrite_keys(drop):
    """authorized_keys without the lines drop() picks: written whole, then renamed."""
    path = authorized_keys()
    with keys_locked():
        try:
            with open(path) as fh:
                lines = fh.read().splitlines(True)
        except FileNotFoundError:
            return
        kept = [line for line in lines if not drop(line)]
        if len(kept) == len(lines):
            return
        tmp = path + ".drfleet-relay"
        with open(tmp, "w") as fh:
            fh.writelines(kept)
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)


def stale(line):
    if MARK not in line:
        return False
    where = line.rsplit(MARK, 1)[1].strip()
    return not os.path.isdir(where)


def leftovers(d):
    """Earlier transfers' directories of this user, 20 minutes old: never a link or another
    user's entry (anyone may make /tmp/drfleet-relay.x, pointing anywhere)."""
    for name in os.listdir("/tmp"):
        old = os.path.join("/tmp", name)
        if not old.startswith(PREFIX) or old == d:
            continue
        try:
            st = os.lstat(old)
        except OSError:
            continue
        mine = stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
        if mine and st.st_mtime < time.time() - 1200:
            shutil.rmtree(old, ignore_errors=True)


def prepare(d, want_key):
    leftovers(d)
    rewrite_keys(stale)
    pub = None
    if want_key == "key":
        key = os.path.join(d, "key")
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "drfleet-relay", "-f", key],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        with open(key + ".pub") as fh:
            pub = fh.read().split()[:2]
    # UTC, said so with the Z (sshd reads a time without it in its own zone)
    expiry = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 900))
    print(json.dumps({"dir": d, "pub": pub, "expiry": expiry, "ssh": bool(shutil.which("ssh"))}))


def setup(d):
    given = json.load(sys.stdin)
    known = one_line(given.get("known_hosts") or "", "next host's key")
    entry = one_line(given.get("authorize") or "", "authorized_keys entry")
    with open(os.path.join(d, "conf.json"), "w") as fh:
        json.dump(given["conf"], fh)
    if known:
        with open(os.path.join(d, "known_hosts"), "w") as fh:
            fh.write(known + "\n")
    if entry:
        with keys_locked():
            with open(authorized_keys(), "a") as fh:
                fh.write(entry + " " + MARK + d + "\n")
            os.chmod(authorized_keys(), os.stat(authorized_keys()).st_mode & 0o644)


def cleanup(d):
    """Also ends a relay of d still waiting for input that will never come (the host before
    it died, and nothing tells a half-open connection apart from a slow one); its docker load
    then fails and loads nothing."""
    rewrite_keys(lambda line: line.rstrip().endswith(MARK + d))
    shutil.rmtree(d, ignore_errors=True)
    mine = [b"-S", (d + "/relay.py").encode(), b"run", d.encode()]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                argv = fh.read().split(b"\0")[:-1]
        except OSError:
            continue
        if argv[-len(mine):] == mine and os.path.basename(argv[0]).startswith(b"python3"):
            try:
                os.kill(int(pid), 15)
            except OSError:
                pass


class Out:
    def __init__(self, host):
        self.host = host
        self.lock = threading.Lock()

    def say(self, **fields):
        fields.setdefault("host", self.host)
        self.line(json.dumps(fields))

    def line(self, text):
        with self.lock:
            sys.stdout.write(text.rstrip("\n") + "\n")
            sys.stdout.flush()


def drain(pipe, into):
    into.append(pipe.read())


def forward(pipe, out):
    for raw in iter(pipe.readline, b""):
        out.line(raw.decode("utf-8", "replace"))


def run(d):
    rewrite_keys(lambda line: line.rstrip().endswith(MARK + d))
    try:
        relay(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def hop_command(d, nxt):
    """ssh to the next host's relay: this transfer's key, that host's key as the controller
    verified it, nothing forwarded."""
    return [
        "ssh", "-T", "-x", "-a", "-i", os.path.join(d, "key"),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + os.path.join(d, "known_hosts"),
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HostKeyAlias=" + nxt["alias"],
        "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15",
        # AES-GCM runs on the CPU's AES instructions: cheaper per byte than OpenSSH's
        # first choice (chacha20), and every byte of the image crosses each hop
        "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
        "-p", str(nxt["port"]), "-l", nxt["user"], nxt["address"],
    ]


def relay(d):
    with open(os.path.join(d, "conf.json")) as fh:
        conf = json.load(fh)
    out = Out(conf["host"])
    sudo = ["sudo", "-n", "--"] if conf.get("sudo") else []
    load = subprocess.Popen(
        sudo + ["docker", "load", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    said = []
    threading.Thread(target=drain, args=(load.stdout, said), daemon=True).start()
    nxt, hop, hop_err, pump = conf.get("next"), None, [], None
    if nxt:
        hop = subprocess.Popen(
            hop_command(d, nxt),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        pump = threading.Thread(target=forward, args=(hop.stdout, out), daemon=True)
        pump.start()
        threading.Thread(target=drain, args=(hop.stderr, hop_err), daemon=True).start()
    done, last, error = 0, 0.0, None
    while True:
        chunk = os.read(0, CHUNK)
        if not chunk:
            break
        if error is None:
            try:
                load.stdin.write(chunk)
            except OSError:
                error = "docker load stopped reading"
        if hop is not None:
            try:
                hop.stdin.write(chunk)
            except OSError:
                status = hop.wait()
                time.sleep(0.1)
                why = (hop_err[0] if hop_err else b"").decode("utf-8", "replace").strip()
                out.say(
                    host=nxt["host"],
                    error="the relay to it stopped reading (ssh exited %d: %s)" % (status, why[-300:]),
                )
                hop.stdin, hop = None, None
        done += len(chunk)
        now = time.monotonic()
        if now - last >= 0.5:
            last = now
            out.say(bytes=done)
    for proc in (load, hop):
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
    code = load.wait()
    time.sleep(0.05)
    text = (said[0] if said else b"").decode("utf-8", "replace").strip()
    got = subprocess.run(
        sudo + ["docker", "image", "inspect", "--format", "{{.Id}}", conf["image"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ).stdout.decode().strip()
    # whether it is the image sent is the controller's to judge, by the image's identity
    # (the id differs between docker's image stores)
    if code != 0 and error is None:
        error = "docker load failed: " + text[-400:]
    elif not got and error is None:
        error = "after docker load there is no image %s" % conf["image"]
    out.say(bytes=done, done=True, id=got, error=error)
    if hop is not None:
        status = hop.wait()
        pump.join(30)
        if status != 0:
            why = (hop_err[0] if hop_err else b"").decode("utf-8", "replace").strip()
            out.say(host=nxt["host"], hop=True, error="ssh to it exited %d: %s" % (status, why[-300:]))


def main():
    what, d = sys.argv[1], os.path.abspath(sys.argv[2])
    if not d.startswith(PREFIX):
        sys.exit("drfleet-relay: not a relay directory: " + d)
    if what == "prepare":
        prepare(d, sys.argv[3] if len(sys.argv) > 3 else "")
    elif what == "setup":
        setup(d)
    elif what == "cleanup":
        cleanup(d)
    elif what == "run":
        run(d)
    else:
        sys.exit("drfleet-relay: unknown command " + what)


if __name__ == "__main__":
    main()
