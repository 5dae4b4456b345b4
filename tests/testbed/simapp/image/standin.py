#!/usr/bin/env python3
"""The stand-in simapp's programs, started the way the real image starts its own (see
Dockerfile, run.sh, ros2, start.py, train beside this file):

- `minio`: an S3 API server (moto) on :9000, in place of minio;
- `aws`: S3 over TLS on :443 and DNS for *.amazonaws.com, in place of AWS (DR_CLOUD=aws);
- `trainer` (the SageMaker container `algo-1-*`, command `train`): reads
  /opt/ml/input/config/hyperparameters.json as SageMaker's local mode writes it, runs redis on
  6379, writes `<prefix>/ip/ip.json` and `ip/done`, collects num_episodes_between_training
  episodes per iteration the way markov/deepracer_memory.py does (see `fetch`), loads a
  pretrained checkpoint and writes each new one in the real layout (see `Checkpoints`), and
  what it got to `<prefix>/standin/iteration-N.json`;
- `gazebo`: the simulation server, started pinned by `ros2` (taskset); its clock is what the
  stand-in `gz` reports as the world's statistics;
- `rollout <gazebo pid>`: download_params_and_roslaunch_agent.py and the rollout worker: the
  params file `<prefix>/<S3_YAML_NAME>` and its model metadata must exist; rollout_idx is
  ROLLOUT_IDX; it reports what it was started with to `<prefix>/standin/workers/<idx>.json`,
  serves its topics on 8080 (web_video_server), plays its share of every iteration and answers
  the trainer's requests for the episodes its index owns (see `answer`);
- `evaluation <gazebo pid>`: the evaluation worker (see `evaluation`);
- `vnc`: listens on 5900 where the real run.sh starts x11vnc.
"""

import http.server
import io
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

ROLE = sys.argv[1] if len(sys.argv) > 1 else "?"
TOPICS = {
    "/racecar/deepracer/kvs_stream": "kvs_stream",
    "/racecar/main_camera/zed/rgb/image_rect_color": "main_camera",
    "/sub_camera/zed/rgb/image_rect_color": "sub_camera",
    "/racecar/camera/zed/rgb/image_rect_color": "camera",
}


def log(*args):
    print(f"[standin {ROLE}]", *args, flush=True)


def str2bool(v):
    return str(v).lower() in ("yes", "true", "t", "1")


def s3():
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("APP_REGION") or "us-east-1"
    return boto3.client(
        "s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None, region_name=region
    )


DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
    "</Message></Error>"
)


def signed_by(environ, user, secret):
    """None when the request is signed (AWS SigV4, header or query) with minio's root
    credentials, else minio's error code and message: the real one refuses other keys. Of a
    SigV2 request (boto3's presigned URLs) only the key id is checked."""
    import hashlib
    import hmac
    import urllib.parse

    auth = environ.get("HTTP_AUTHORIZATION", "")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if auth.startswith("AWS4-HMAC-SHA256 "):
        fields = dict(f.strip().split("=", 1) for f in auth[17:].split(","))
        credential, signed, signature = (
            fields["Credential"],
            fields["SignedHeaders"],
            fields["Signature"],
        )
        stamp = environ.get("HTTP_X_AMZ_DATE", "")
        payload = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "UNSIGNED-PAYLOAD")
        pairs = [
            (k, v)
            for k, v in urllib.parse.parse_qsl(
                environ.get("QUERY_STRING", ""), keep_blank_values=True
            )
        ]
    elif "X-Amz-Credential" in query:
        credential = query["X-Amz-Credential"][0]
        signed, signature = query["X-Amz-SignedHeaders"][0], query["X-Amz-Signature"][0]
        stamp, payload = query["X-Amz-Date"][0], "UNSIGNED-PAYLOAD"
        pairs = [
            (k, v)
            for k, v in urllib.parse.parse_qsl(
                environ.get("QUERY_STRING", ""), keep_blank_values=True
            )
            if k != "X-Amz-Signature"
        ]
    elif "AWSAccessKeyId" in query or auth.startswith("AWS "):  # SigV2: the key id alone
        key_id = query.get("AWSAccessKeyId", [auth[4:].split(":")[0]])[0]
        if key_id == user:
            return None
        return "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records."
    else:
        return "AccessDenied", "Access Denied."
    key_id, scope = credential.split("/", 1)
    if key_id != user:
        return (
            "InvalidAccessKeyId",
            "The Access Key Id you provided does not exist in our records.",
        )

    def q(v):
        return urllib.parse.quote(v, safe="-_.~")

    path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    path = path.split("?", 1)[0]
    headers = []
    for name in signed.split(";"):
        if name == "host":
            value = environ.get("HTTP_HOST", "")
        elif name == "content-type":
            value = environ.get("CONTENT_TYPE", "")
        elif name == "content-length":
            value = environ.get("CONTENT_LENGTH", "")
        else:
            value = environ.get("HTTP_" + name.upper().replace("-", "_"), "")
        headers.append(f"{name}:{' '.join(value.split())}\n")
    canonical = "\n".join(
        [
            environ["REQUEST_METHOD"],
            path,
            "&".join(f"{q(k)}={q(v)}" for k, v in sorted(pairs)),
            "".join(headers),
            signed,
            payload,
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    if hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
        return None
    return (
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def minio(args):
    """minio `server /data`: the S3 API on 9000 (moto), keeping what it holds in the data
    directory as the real one does, so a recreated container (stop, then train, download-model
    or import-model) finds the models of earlier runs. Each write reaches the disk before its
    answer (write-through), so a killed container loses nothing either. Objects are plain files
    /data/<bucket>/<key> (minio's old FS mode; today's minio keeps its own format)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    data = args[1] if len(args) > 1 and args[0] == "server" else None
    user = os.environ.get("MINIO_ROOT_USER") or os.environ.get("MINIO_ACCESS_KEY")
    secret = os.environ.get("MINIO_ROOT_PASSWORD") or os.environ.get("MINIO_SECRET_KEY", "")
    moto = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        health = environ.get("PATH_INFO", "").startswith("/minio/health/")  # open in minio
        denied = signed_by(environ, user, secret) if user and not health else None
        if denied:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [DENIED.format(code=denied[0], message=denied[1]).encode()]
        return moto(environ, start_response)

    if not data:
        run_simple("0.0.0.0", 9000, app, threaded=True, request_handler=MotoRequestHandler)
        return
    os.makedirs(data, exist_ok=True)
    own = {}

    def client():
        if "c" not in own:  # moto checks no credentials; the stand-in talks to itself
            import boto3

            own["c"] = boto3.client(
                "s3",
                endpoint_url="http://127.0.0.1:9000",
                region_name="us-east-1",
                aws_access_key_id=user or "standin",
                aws_secret_access_key=secret or "standin",
            )
        return own["c"]

    def sync(bucket, key):
        root = os.path.realpath(os.path.join(data, bucket))
        c = client()
        if key:
            path = os.path.realpath(os.path.join(root, key))
            if not path.startswith(root + os.sep) or key.endswith("/"):
                return
            try:
                body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
            except c.exceptions.NoSuchKey:
                if os.path.isfile(path):
                    os.unlink(path)
                return
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".part", "wb") as fh:
                fh.write(body)
            os.replace(path + ".part", path)
            return
        try:  # the bucket as a whole (created, deleted, or a multi-object delete)
            keys = {
                o["Key"]
                for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])
            }
        except c.exceptions.NoSuchBucket:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
            return
        os.makedirs(root, exist_ok=True)
        for top, _dirs, files in os.walk(root):
            for f in files:
                rel = os.path.relpath(os.path.join(top, f), root)
                if rel not in keys:
                    os.unlink(os.path.join(top, f))

    ready = threading.Event()

    def persisted(environ, start_response):
        if not ready.is_set():  # while loading, only the loader (on loopback) is served
            if environ.get("REMOTE_ADDR") != "127.0.0.1":
                ready.wait()
            else:
                return app(environ, start_response)
        status = {}

        def start(code, headers, *exc):
            status["code"] = int(code.split()[0])
            return start_response(code, headers, *exc)

        out = app(environ, start)
        method = environ["REQUEST_METHOD"]
        if method in ("PUT", "POST", "DELETE") and 200 <= status.get("code", 500) < 300:
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
            bucket, _, key = path.lstrip("/").partition("/")
            if bucket:
                out = list(out)  # the request is done before its answer goes
                sync(bucket, key)
        return out

    def load():
        """What the data directory holds, back into the API (on start)."""
        c = client()
        for bucket in sorted(os.listdir(data)):
            if not os.path.isdir(os.path.join(data, bucket)) or bucket.startswith("."):
                continue
            c.create_bucket(Bucket=bucket)
            for top, _dirs, files in os.walk(os.path.join(data, bucket)):
                for f in files:
                    if f.endswith(".part"):
                        continue
                    full = os.path.join(top, f)
                    with open(full, "rb") as fh:
                        c.put_object(
                            Bucket=bucket,
                            Key=os.path.relpath(full, os.path.join(data, bucket)),
                            Body=fh.read(),
                        )

    def loader():
        while True:
            try:
                load()
                break
            except Exception as exc:  # the server is not up yet
                if "Could not connect" not in str(exc) and "Connection" not in str(exc):
                    log("cannot load", data, exc)  # as minio with a data dir it cannot read
                    os._exit(1)
                time.sleep(0.1)
        ready.set()
        log("loaded", data)

    threading.Thread(target=loader, daemon=True).start()
    run_simple("0.0.0.0", 9000, persisted, threaded=True, request_handler=MotoRequestHandler)


def aws(_args):
    """AWS as the containers see it when they are given no endpoint (DR_CLOUD=aws): a DNS
    server on 53/udp answering every *.amazonaws.com name with AWS_STANDIN_ADDRESS (as the
    resolver of the hosts' network answers S3's names), and S3 on 443 over TLS with
    /certs/s3.crt (S3's names, signed by the test CA this image trusts as the real image
    trusts Amazon's). Requests must be signed (SigV4) by one of AWS_STANDIN_KEYS
    (`key:secret,...`: a user's and an instance role's) for AWS_STANDIN_REGION: S3 refuses
    unknown keys and a signature scoped to another region (AuthorizationHeaderMalformed)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    address = socket.inet_aton(os.environ["AWS_STANDIN_ADDRESS"])
    region = os.environ.get("AWS_STANDIN_REGION", "us-east-1")
    known = dict(pair.split(":", 1) for pair in os.environ["AWS_STANDIN_KEYS"].split(","))
    moto = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = (
            auth.split("Credential=", 1)[1].split(",")[0].split("/")
            if "Credential=" in auth
            else []
        )
        if len(scope) > 2 and scope[2] != region:
            start_response("400 Bad Request", [("Content-Type", "application/xml")])
            message = f"the region '{scope[2]}' is wrong; expecting '{region}'"
            return [DENIED.format(code="AuthorizationHeaderMalformed", message=message).encode()]
        key_id = scope[0] if scope else ""
        denied = signed_by(environ, key_id, known[key_id]) if key_id in known else None
        if denied or key_id not in known:
            denied = denied or (
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [DENIED.format(code=denied[0], message=denied[1]).encode()]
        return moto(environ, start_response)

    def dns():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # bound to the address it answers for: a reply from 0.0.0.0 to a container of this
        # host would leave from the docker bridge's address, which the asker drops
        sock.bind((os.environ["AWS_STANDIN_ADDRESS"], 53))
        while True:
            query, peer = sock.recvfrom(512)
            labels, i = [], 12
            while i < len(query) and query[i]:
                labels.append(query[i + 1 : i + 1 + query[i]].decode("ascii", "replace"))
                i += 1 + query[i]
            qtype = int.from_bytes(query[i + 1 : i + 3], "big")
            question = query[12 : i + 5]
            name = ".".join(labels).lower()
            ours = name == "amazonaws.com" or name.endswith(".amazonaws.com")
            rcode = 0 if ours else 3  # NXDOMAIN: no other name exists here
            answer = b""
            if ours and qtype == 1:  # A; AAAA and the rest: no answer, so A is used
                answer = b"\xc0\x0c" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big")
                answer += (60).to_bytes(4, "big") + (4).to_bytes(2, "big") + address
            flags = 0x8180 | rcode
            header = query[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big")
            header += (1 if answer else 0).to_bytes(2, "big") + bytes(4)
            sock.sendto(header + question + answer, peer)

    threading.Thread(target=dns, daemon=True).start()
    run_simple(
        "0.0.0.0",
        443,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=("/certs/s3.crt", "/certs/s3.key"),
    )


def trainer(_args):
    import redis

    with open("/opt/ml/input/config/hyperparameters.json") as fh:
        hyper = {k: json.loads(v) for k, v in json.load(fh).items()}
    bucket, prefix = hyper["s3_bucket"], hyper["s3_prefix"]
    subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    r = redis.Redis(host="127.0.0.1", port=6379)
    while True:
        try:
            r.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    client = s3()
    episodes = int(hyper["num_episodes_between_training"])
    # stand-in knobs a test may put in hyperparameters.json: how many iterations, and how
    # long each one "trains" (a real one takes minutes; workers wait meanwhile)
    iterations = int(hyper.get("standin_iterations", 2))
    pause = float(hyper.get("standin_train_seconds", 0))
    steps = os.environ.get("MAX_MEMORY_STEPS")
    ckpts = Checkpoints(client, bucket, prefix)
    ckpts.start(hyper)
    client.put_object(
        Bucket=bucket,
        Key=f"{prefix}/standin/trainer.json",
        Body=json.dumps(
            {
                "hyperparameters": hyper,
                "run_id": os.environ.get("RUN_ID"),
                "max_memory_steps": steps,
                "telegraf": [os.environ.get("TELEGRAF_HOST"), os.environ.get("TELEGRAF_PORT")],
                "pretrained": ckpts.loaded,
            }
        ),
    )
    r.set("standin:episodes", episodes)
    r.set("standin:iteration", 0)
    ip = socket.gethostbyname(socket.gethostname())
    client.put_object(Bucket=bucket, Key=prefix + "/ip/ip.json", Body=json.dumps({"IP": ip}))
    client.put_object(Bucket=bucket, Key=prefix + "/ip/done", Body=b"done")
    log("redis at", ip, "episodes per iteration", episodes)
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(DATA)
    for it in range(iterations):
        got, extra = fetch(r, sub, it, episodes)
        end = time.monotonic() + max(pause, 0.3)
        while time.monotonic() < end:  # (training) a second answer to a late request is dropped
            extra += second_answers(sub, it, got, end - time.monotonic())
        for e in got:
            e["answers"] = 1 + len({x["worker"] for x in extra if x["episode"] == e["episode"]})
        if extra:
            log("iteration", it, "episodes answered twice:", sorted({x["episode"] for x in extra}))
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/standin/iteration-{it}.json", Body=json.dumps(got)
        )
        ckpts.save(it, got)
        r.set("standin:iteration", it + 1)
        log("iteration", it, "done with", len(got), "episodes")
    r.set("standin:finished", 1)
    while True:
        time.sleep(3600)


# markov/deepracer_memory.py: the trainer asks for episodes on WORKER_CHANNEL + '_' + agent and
# the workers answer on the memory backend's channel + '_' + agent
REQUEST = "worker_channel_agent"
DATA = "standin-channel_agent"
ASK_AGAIN = 1.0  # DeepRacerTrainerBackEnd.publish_worker asks again after POLL_TIME (10 s)


def fetch(r, sub, it, episodes):
    """DeepRacerTrainerBackEnd.fetch: asks for episode 0, then 1, ... in turn, each until an
    answer for it comes; the worker whose index owns it answers. Its data queue holds one item
    and drops what does not fit (`queue.Full: pass`), so when two workers with one index both
    answer, the first answer is taken and the other is dropped: training goes on. The stand-in
    keeps the dropped ones (`extra`) so a test can see a slot running twice."""
    got, extra = [], []
    asked = 0.0
    while len(got) < episodes:
        if time.monotonic() - asked >= ASK_AGAIN:
            r.publish(REQUEST, json.dumps({"iteration": it, "episode": len(got)}))
            asked = time.monotonic()
        msg = sub.get_message(timeout=0.2)
        if not msg:
            continue
        e = json.loads(msg["data"])
        if e["iteration"] != it:
            continue  # left over from an earlier fetch: cleared
        if e["episode"] == len(got):
            got.append(e)
            asked = 0.0  # the data handler wakes publish_worker: the next request goes now
        elif e["episode"] < len(got) and e["worker"] != got[e["episode"]]["worker"]:
            extra.append(e)
    return got, extra


def second_answers(sub, it, got, wait):
    """Answers that come after the episode was taken, from another worker than the first."""
    msg = sub.get_message(timeout=max(wait, 0))
    if not msg:
        return []
    e = json.loads(msg["data"])
    first = got[e["episode"]] if e["iteration"] == it and e["episode"] < len(got) else None
    return [e] if first and e["worker"] != first["worker"] else []


NUM_MODELS_TO_KEEP = 4  # markov/boto/s3/constants.py
CORE = ("s3_bucket", "s3_prefix", "aws_region", "model_metadata_s3_key")


class Checkpoints:
    """What the trainer keeps under `<prefix>/` (markov/training_worker.py,
    markov/boto/s3/files/checkpoint_files/*, markov/metrics/s3_metrics.py), as bytes that say
    where they came from:
    - at start: `model/model_metadata.json` (a copy of model_metadata_s3_key) and
      `ip/hyperparameters.json`;
    - per iteration N: `model/N_Step-S.ckpt.{data-00000-of-00001,index,meta}` (the last
      NUM_MODELS_TO_KEEP and the best stay, older ones are deleted), `model/model_N.pb` (the
      frozen graph), `model/.coach_checkpoint` (the checkpoint's name) and
      `model/deepracer_checkpoints.json` ({best,last}_checkpoint: name, avg_eval_metric,
      time_stamp; the real one is written by rollout worker 0's model picker).
    With pretrained_s3_prefix it first reads the pretrained prefix's deepracer_checkpoints.json,
    picks `pretrained_checkpoint` (best, else last) and needs that checkpoint's files (the real
    one ends with "No checkpoint files" without them)."""

    def __init__(self, client, bucket, prefix):
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.kept, self.best, self.loaded = [], None, None

    def key(self, name):
        return f"{self.prefix}/model/{name}"

    def put(self, key, body):
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def start(self, hyper):
        src = hyper["model_metadata_s3_key"].split("/", 3)  # s3://bucket/key
        meta = self.client.get_object(Bucket=src[2], Key=src[3])["Body"].read()
        self.put(self.key("model_metadata.json"), meta)
        robomaker = {k: v for k, v in hyper.items() if k not in CORE and not k.startswith("pre")}
        self.put(f"{self.prefix}/ip/hyperparameters.json", json.dumps(robomaker).encode())
        self.loaded = self.pretrained(self.client, hyper)

    @staticmethod
    def pretrained(client, hyper):
        """What the pretrained prefix gives (training_worker.py: best or last of its
        deepracer_checkpoints.json), or None without one; exits as the real one does."""
        bucket, prefix = hyper.get("pretrained_s3_bucket"), hyper.get("pretrained_s3_prefix")
        if not bucket or not prefix:
            return None
        which = "best" if str(hyper.get("pretrained_checkpoint", "")).lower() == "best" else "last"
        try:
            index = json.loads(
                client.get_object(Bucket=bucket, Key=f"{prefix}/model/deepracer_checkpoints.json")[
                    "Body"
                ].read()
            )
            name = index[f"{which}_checkpoint"]["name"]
            parts = {}
            for ext in ("data-00000-of-00001", "index", "meta"):
                key = f"{prefix}/model/{name}.{ext}"
                parts[ext] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            sys.exit(f"No checkpoint files in s3://{bucket}/{prefix}/model: {exc}")
        import hashlib

        digest = hashlib.sha256(b"".join(parts[k] for k in sorted(parts))).hexdigest()
        return {"prefix": prefix, "checkpoint": which, "name": name, "digest": digest}

    @staticmethod
    def metric(it):
        """The model picker's avg_eval_metric (progress): 80, 57, 74, ...: iteration 0 stays
        the best, so best and last differ from the second iteration on."""
        return float(80 - (it * 23) % 40)

    def save(self, it, episodes):
        name = f"{it}_Step-{(it + 1) * 100 * len(episodes)}.ckpt"
        parent = self.loaded["digest"] if self.loaded else ""
        data = json.dumps({"checkpoint": name, "parent": parent, "episodes": episodes})
        for ext, body in (
            ("data-00000-of-00001", data.encode()),
            ("index", f"index of {name}".encode()),
            ("meta", f"graph of {name}".encode()),
        ):
            self.put(self.key(f"{name}.{ext}"), body)
        self.put(self.key(f"model_{it}.pb"), f"frozen graph of {name} ({parent})".encode())
        self.put(self.key(".coach_checkpoint"), name.encode())
        stats = {"name": name, "avg_eval_metric": self.metric(it), "time_stamp": time.time()}
        if self.best is None or stats["avg_eval_metric"] >= self.best["avg_eval_metric"]:
            self.best = stats
        self.put(
            self.key("deepracer_checkpoints.json"),
            json.dumps({"best_checkpoint": self.best, "last_checkpoint": stats}).encode(),
        )
        self.kept.append(name)
        keep = set(self.kept[-NUM_MODELS_TO_KEEP:]) | {self.best["name"]}
        for old in [n for n in self.kept if n not in keep]:
            for ext in ("data-00000-of-00001", "index", "meta"):
                self.client.delete_object(Bucket=self.bucket, Key=self.key(f"{old}.{ext}"))
        self.kept = [n for n in self.kept if n in keep]


WORLDS = (
    "/opt/amazon/install/deepracer_simulation_environment/share/"
    "deepracer_simulation_environment/worlds"
)


def world_rtf(world):
    """The real_time_factor run.sh's RTF_OVERRIDE wrote into the world file, or "" (none)."""
    import xml.etree.ElementTree as ET

    try:
        node = ET.parse(f"{WORLDS}/{world}.world").find("world/physics/real_time_factor")
    except (OSError, ET.ParseError):
        return ""
    return node.text if node is not None else ""


def telegraf(measurement, values, tags):
    """s3_metrics.py's TelegrafClient(TELEGRAF_HOST, TELEGRAF_PORT or 8092).metric(...) when
    TELEGRAF_HOST is set: one InfluxDB line over UDP as pytelegraf (telegraf/protocol.py,
    utils.py) writes it: tags and fields sorted by name, commas and spaces escaped, ints with
    an `i`, strings quoted; a socket error is ignored (client.py send)."""
    host = os.environ.get("TELEGRAF_HOST")
    if not host:
        return

    def name(x):
        return str(x).replace(",", "\\,").replace(" ", "\\ ")

    def value(v):
        if isinstance(v, str):  # its replace('"', '\"') leaves the string as it was
            return f'"{v}"'
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, int):
            return f"{v}i"
        return str(v)

    tag_part = ",".join(f"{name(k)}={name(tags[k])}" for k in sorted(tags, key=str.lower))
    fields = ",".join(f"{name(k)}={value(values[k])}" for k in sorted(values, key=str.lower))
    line = name(measurement) + ("," + tag_part if tag_part else "") + " " + fields
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = int(os.environ.get("TELEGRAF_PORT") or 8092)
        sock.sendto(line.encode("ascii") + b"\n", (host, port))
    except (OSError, RuntimeError):
        pass
    finally:
        sock.close()


def gazebo(args):
    # empty_world.launch.py: `gz sim <share>/worlds/<world_name>.world -s ...`; gz sim cannot
    # load a world file that is not there and the (required) server dies
    world = args[0] if args else ""
    if not os.path.exists(f"{WORLDS}/{world}.world"):
        sys.exit(f"[Err] [Server.cc] Unable to find or download file {WORLDS}/{world}.world")
    log(
        "simulation server on CPUs",
        sorted(os.sched_getaffinity(0)),
        "world",
        world,
        "real_time_factor",
        world_rtf(world) or "default",
    )
    # its clock, for the stand-in `gz` (see gz): the world's statistics topic while it runs
    os.makedirs("/tmp/gz-standin", exist_ok=True)
    state = {"world": world, "pid": os.getpid(), "started": time.time()}
    state["rtf"] = float(world_rtf(world) or 1.0)
    with open("/tmp/gz-standin/world.json.new", "w") as f:
        json.dump(state, f)
    os.replace("/tmp/gz-standin/world.json.new", "/tmp/gz-standin/world.json")
    while True:
        time.sleep(3600)


def vnc(_args):
    srv = socket.create_server(("0.0.0.0", 5900))
    while True:
        conn, _ = srv.accept()
        conn.sendall(b"RFB 003.008\n")
        conn.close()


def frame(text, n):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (480, 360), (20, 60, 20))
    draw = ImageDraw.Draw(img)
    draw.text((20, 20), text, fill=(255, 255, 255))
    draw.text((20, 330), f"frame {n}", fill=(200, 200, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def serve_video(text, topics):
    """web_video_server: /stream?topic=... for a topic that is published; none else."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            topic = urllib.parse.parse_qs(url.query).get("topic", [""])[0]
            if url.path != "/stream" or TOPICS.get(topic) not in topics:
                self.send_response(404)
                self.end_headers()
                return
            # web_video_server's src/multipart_stream.cpp (sendInitialHeader, sendPartHeader,
            # sendPartFooter): its headers and boundary, then per part Content-type, X-Timestamp
            # and Content-Length, each part closed by \r\n--boundary\r\n; X-Standin-Topic, in
            # each part, is for the tests' eyes only (the viewer passes parts on, never a
            # worker's headers)
            self.send_response(200)
            self.send_header("Connection", "close")
            self.send_header("Server", "web_video_server")
            self.send_header(
                "Cache-Control",
                "no-cache, no-store, must-revalidate, pre-check=0, post-check=0, max-age=0",
            )
            self.send_header("Pragma", "no-cache")
            self.send_header(
                "Content-type", "multipart/x-mixed-replace;boundary=boundarydonotcross"
            )
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            n = 0
            try:
                while True:
                    data = frame(f"{text}\n{TOPICS[topic]}", n)
                    self.wfile.write(
                        b"--boundarydonotcross\r\nContent-type: image/jpeg\r\n"
                        + b"X-Timestamp: %.6f\r\n" % time.time()
                        + b"Content-Length: "
                        + str(len(data)).encode()
                        + b"\r\nX-Standin-Topic: "
                        + TOPICS[topic].encode()
                        + b"\r\n\r\n"
                        + data
                        + b"\r\n"
                    )
                    n += 1
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    threading.Thread(target=Server(("0.0.0.0", 8080), Handler).serve_forever, daemon=True).start()


def evaluation(args):
    """evaluation.launch.py: download_params_and_roslaunch_agent.py (the eval params at
    MODEL_S3_PREFIX/S3_YAML_NAME in MODEL_S3_BUCKET, then each car's
    <prefix>/model/model_metadata.json) and markov/evaluation_worker.py: the checkpoint
    EVAL_CHECKPOINT names (best or last of deepracer_checkpoints.json; "No checkpoint files"
    without its files), NUMBER_OF_TRIALS laps, the metrics written after each lap to
    METRICS_S3_BUCKET[0]/METRICS_S3_OBJECT_KEY[0] as EvalMetrics.upload_episode_metrics writes
    them ({"metrics": [...]}, no version key), then "Evaluation job complete" and exit 0
    (SIMAPP_DONE_EXIT). Each lap is a second; lap k of a checkpoint is complete when k is odd.
    What it loaded goes to <prefix>/standin/evaluation.json."""
    import hashlib

    import yaml

    bucket, prefix = os.environ["MODEL_S3_BUCKET"], os.environ["MODEL_S3_PREFIX"]
    key = os.path.normpath(os.path.join(prefix, os.environ["S3_YAML_NAME"]))
    client = s3()
    try:
        params = yaml.safe_load(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        for b, p in zip(params["MODEL_S3_BUCKET"], params["MODEL_S3_PREFIX"], strict=True):
            client.head_object(Bucket=b, Key=f"{p}/model/model_metadata.json")
    except Exception as exc:
        sys.exit(
            f"Download params and launch of agent node S3 ClientError: s3_bucket: {bucket}, "
            f"yaml_key: {key}, {exc}"
        )
    which = "best" if str(params.get("EVAL_CHECKPOINT", "last")).lower() == "best" else "last"
    model_bucket, model_prefix = params["MODEL_S3_BUCKET"][0], params["MODEL_S3_PREFIX"][0]
    try:
        index = json.loads(
            client.get_object(
                Bucket=model_bucket, Key=f"{model_prefix}/model/deepracer_checkpoints.json"
            )["Body"].read()
        )
        name = index[f"{which}_checkpoint"]["name"]
        data = b"".join(
            client.get_object(Bucket=model_bucket, Key=f"{model_prefix}/model/{name}.{ext}")[
                "Body"
            ].read()
            for ext in ("data-00000-of-00001", "index", "meta")
        )
    except Exception as exc:
        sys.exit(f"No checkpoint files in s3://{model_bucket}/{model_prefix}/model: {exc}")
    trials = int(params["NUMBER_OF_TRIALS"])
    metrics_bucket, metrics_key = params["METRICS_S3_BUCKET"][0], params["METRICS_S3_OBJECT_KEY"][0]
    report = {
        "checkpoint": which,
        "name": name,
        "digest": hashlib.sha256(data).hexdigest(),
        "params": key,
        "world": params["WORLD_NAME"],
        "trials": trials,
        "gazebo_cpus": allowed_cpus(int(args[0])) if args else "",
        "hostname": socket.gethostname(),
    }
    client.put_object(
        Bucket=bucket, Key=f"{prefix}/standin/evaluation.json", Body=json.dumps(report)
    )
    log("evaluating", name, "on", params["WORLD_NAME"], "for", trials, "trials")
    # evaluation_rl_agent.launch.py includes racetrack_with_racecar.launch.py, whose
    # web_video_server serves 8080 while the trials run; its Shutdown ends the launch after
    serve_video(f"evaluation\n{params['WORLD_NAME']}", ["kvs_stream", "camera"])
    metrics, start = [], 0
    for trial in range(1, trials + 1):
        time.sleep(2)  # a real trial is a lap (tens of seconds); its video is watched meanwhile
        done = trial % 2 == 1
        elapsed = 10000 + 250 * trial
        metrics.append(
            {
                "completion_percentage": 100 if done else 40 + trial,
                "metric_time": start + elapsed,
                "start_time": start,
                "elapsed_time_in_milliseconds": elapsed,
                "episode_status": "Lap complete" if done else "Off track",
                "crash_count": 0,
                "immobilized_count": 0,
                "off_track_count": 0 if done else 1,
                "reversed_count": 0,
                "reset_count": 0 if done else 1,
                "trial": trial,
            }
        )
        start += elapsed
        client.put_object(
            Bucket=metrics_bucket, Key=metrics_key, Body=json.dumps({"metrics": metrics})
        )
    log("Evaluation job complete")
    sys.exit(0)


def allowed_cpus(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return ""


def standin_reward(it, idx):
    """The reward of each episode worker idx plays in iteration it (rises as it trains)."""
    return 10 * (it + 1) + idx


def standin_progress(it, idx):
    return min(100, 30 + 20 * it + idx)


def rollout(args):
    import redis
    import yaml

    region = os.environ["APP_REGION"]
    bucket = os.environ["SAGEMAKER_SHARED_S3_BUCKET"]
    prefix = os.environ["SAGEMAKER_SHARED_S3_PREFIX"]
    yaml_name = os.environ["S3_YAML_NAME"]
    client = s3()
    key = os.path.normpath(os.path.join(prefix, yaml_name))
    try:
        params = yaml.safe_load(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        client.head_object(Bucket=bucket, Key=params["MODEL_METADATA_FILE_S3_KEY"])
    except Exception as exc:
        sys.exit(
            f"Download params and launch of agent node S3 ClientError: s3_bucket: {bucket}, "
            f"yaml_key: {key}, {exc}"
        )
    idx = int(os.environ.get("ROLLOUT_IDX", "0"))
    workers = int(params["NUM_WORKERS"])
    world = os.environ.get("WORLD_NAME", "")
    topics = ["kvs_stream"] if str2bool(os.environ.get("ENABLE_KINESIS", "True")) else []
    topics += [
        n
        for n, k in (("main_camera", "CAMERA_MAIN_ENABLE"), ("sub_camera", "CAMERA_SUB_ENABLE"))
        if str2bool(params.get(k, "False"))
    ]
    topics.append("camera")
    try:
        with open("/tmp/standin/run.sh.args") as fh:
            runsh_args = fh.read().splitlines()
    except FileNotFoundError:
        runsh_args = None
    report = {
        "runsh_args": runsh_args,
        "rollout_idx": idx,
        "s3_yaml_name": yaml_name,
        "world_name": world,
        "params_world": params["WORLD_NAME"],
        "num_workers": workers,
        "region": region,
        "gazebo_cpus": allowed_cpus(int(args[0])) if args else "",
        "cpu_count": os.cpu_count(),
        "topics": topics,
        "rtf_override": os.environ.get("RTF_OVERRIDE", ""),
        "world_rtf": world_rtf(params["WORLD_NAME"]),
        "hostname": socket.gethostname(),
    }
    client.put_object(
        Bucket=bucket, Key=f"{prefix}/standin/workers/{idx}.json", Body=json.dumps(report)
    )
    log("worker", idx, "world", world, "params", yaml_name, "gazebo on", report["gazebo_cpus"])
    serve_video(f"worker {idx + 1}\n{world}", topics)
    deadline = time.time() + 1200
    while True:
        try:
            client.head_object(Bucket=bucket, Key=prefix + "/ip/done")
            break
        except Exception:
            if time.time() > deadline:
                sys.exit("no ip/done after 1200 s")
            time.sleep(0.5)
    ip = json.loads(client.get_object(Bucket=bucket, Key=prefix + "/ip/ip.json")["Body"].read())[
        "IP"
    ]
    r = redis.Redis(host=ip, port=6379)
    episodes = int(r.get("standin:episodes"))
    if idx >= workers or idx >= episodes:  # rollout_worker.py: nothing for this index
        log(f"rollout_idx[{idx}] >= num_workers[{workers}] or episodes[{episodes}]")
        while True:
            time.sleep(3600)
    mine = [e for e in range(episodes) if e % workers == idx]  # idx, idx + N, ... (its share)
    now = {"it": int(r.get("standin:iteration") or 0)}  # a late joiner (moved slot) starts here
    me = uuid.uuid4().hex

    metrics, played, lock = [], set(), threading.Lock()
    # rollout_worker.py: with several workers, index idx > 0 writes <key>_<idx>.json
    metrics_key = params["METRICS_S3_OBJECT_KEY"]
    if workers > 1 and idx > 0:
        stem, ext = os.path.splitext(metrics_key)
        metrics_key = f"{stem}_{idx}{ext}"

    def play(it, episode):
        """s3_metrics.py TrainingMetrics: an entry per episode, the file rewritten (upload_
        episode_metrics) when the episode ends, before the trainer can have it."""
        with lock:
            if (it, episode) in played:
                return
            played.add((it, episode))
            n = len(metrics) + 1
            progress = standin_progress(it, idx)
            clock = n * 20000
            metrics.append(
                {
                    "reward_score": standin_reward(it, idx),
                    "metric_time": clock + 15000,
                    "start_time": clock,
                    "elapsed_time_in_milliseconds": 15000,
                    "episode": n,
                    "trial": n,
                    "phase": "training",
                    "completion_percentage": progress,
                    "episode_status": "Lap complete" if progress == 100 else "Off track",
                }
            )
            body = json.dumps({"metrics": metrics, "version": "2", "best_model_metric": "progress"})
            client.put_object(Bucket=params["METRICS_S3_BUCKET"], Key=metrics_key, Body=body)
            last = metrics[-1]
            telegraf(
                "dr_training_episodes",
                {
                    "reward": last["reward_score"],
                    "progress": last["completion_percentage"],
                    "elapsed_time": last["elapsed_time_in_milliseconds"],
                },
                {
                    "phase": last["phase"],
                    "status": last["episode_status"],
                    "model": os.environ.get("SAGEMAKER_SHARED_S3_PREFIX", "sagemaker"),
                    "worker": str(os.environ.get("ROLLOUT_IDX", 0)),
                },
            )

    def answer(message):
        """DeepRacerRolloutBackEnd.data_req_handler: publish the requested episode when this
        index owns it and has played it (here: every episode of the current iteration)."""
        req = json.loads(message["data"])
        if req["iteration"] == now["it"] and req["episode"] in mine:
            play(req["iteration"], req["episode"])
            episode = {
                "iteration": now["it"],
                "slot": idx + 1,
                "world": world,
                "episode": req["episode"],
                "worker": me,
                "hostname": socket.gethostname(),
            }
            r.publish(DATA, json.dumps(episode))

    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(**{REQUEST: answer})
    sub.run_in_thread(sleep_time=0.01, daemon=True)
    while not r.get("standin:finished"):  # rollout_worker.py: wait for the next checkpoint
        now["it"] = int(r.get("standin:iteration") or 0)
        time.sleep(0.2)
    log("training finished")
    while True:
        time.sleep(3600)


ROLES = {
    "minio": minio,
    "aws": aws,
    "trainer": trainer,
    "gazebo": gazebo,
    "rollout": rollout,
    "evaluation": evaluation,
    "vnc": vnc,
}

if __name__ == "__main__":
    ROLES[ROLE](sys.argv[2:])
