#!/usr/bin/env python3
"""A stand-in for the DeepRacer simapp image in drfleet's tests, honouring DEEPRACER.md:

- `minio`: an S3 API server (moto) on :9000, in place of minio.
- `rl_coach`: starts the trainer container `algo-1-<suffix>` through the mounted docker socket
  on `sagemaker-local`, as the SageMaker SDK's local mode does, and follows it.
- `trainer`: redis on 6379; writes `ip/ip.json` and `ip/done`; takes exactly
  num_episodes_between_training episodes per iteration; writes a checkpoint to
  `<prefix>/model/` and records which slot and world sent each episode.
- `robomaker`: reads its params (S3_YAML_NAME or its MULTI_CONFIG entry) and
  DOCKER_REPLICA_SLOT, waits for `ip/done`, sends its share of each iteration through redis,
  and serves an MJPEG stream on 8080 showing its slot and world.
"""

import http.server
import io
import json
import os
import random
import socket
import socketserver
import string
import subprocess
import sys
import threading
import time

ROLE = sys.argv[1] if len(sys.argv) > 1 else "?"


def log(*args):
    print(f"[standin {ROLE}]", *args, flush=True)


def s3():
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("APP_REGION") or "us-east-1"
    return boto3.client(
        "s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None, region_name=region
    )


def minio(_args):
    os.execvp("moto_server", ["moto_server", "-H", "0.0.0.0", "-p", "9000"])


PASS = (
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "RUN_ID",
    "MODEL_S3_BUCKET",
    "MODEL_S3_PREFIX",
    "HYPERPARAMETER_FILE_S3_KEY",
    "MODELMETADATA_FILE_S3_KEY",
    "MAX_MEMORY_STEPS",
    "STANDIN_ITERATIONS",
)


def rl_coach(_args):
    import docker

    client = docker.from_env()
    name = "algo-1-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
    env = {k: os.environ[k] for k in PASS if k in os.environ}
    container = client.containers.run(
        os.environ["SAGEMAKER_IMAGE"],
        ["python3", "/opt/ml/code/standin.py", "trainer"],
        name=name,
        hostname=name,
        network="sagemaker-local",
        environment=env,
        detach=True,
    )
    log("started", name)
    for line in container.logs(stream=True, follow=True):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    sys.exit(container.wait()["StatusCode"])


def trainer(_args):
    import redis

    bucket, prefix = os.environ["MODEL_S3_BUCKET"], os.environ["MODEL_S3_PREFIX"]
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
    hyper = json.loads(
        client.get_object(Bucket=bucket, Key=os.environ["HYPERPARAMETER_FILE_S3_KEY"])[
            "Body"
        ].read()
    )
    episodes = int(hyper["num_episodes_between_training"])
    # stand-in knobs a test may put in hyperparameters.json: how many iterations, and how
    # long each one "trains" (a real one takes minutes; workers wait meanwhile)
    iterations = int(hyper.get("standin_iterations", os.environ.get("STANDIN_ITERATIONS", "2")))
    pause = float(hyper.get("standin_train_seconds", 0))
    r.set("standin:episodes", episodes)
    r.set("standin:iteration", 0)
    ip = socket.gethostbyname(socket.gethostname())
    client.put_object(Bucket=bucket, Key=prefix + "/ip/ip.json", Body=json.dumps({"IP": ip}))
    client.put_object(Bucket=bucket, Key=prefix + "/ip/done", Body=b"done")
    log("redis at", ip, "episodes per iteration", episodes)
    for it in range(iterations):
        got = []
        while len(got) < episodes:
            _key, item = r.blpop(f"episodes:{it}")
            got.append(json.loads(item))
        got.sort(key=lambda e: e["episode"])
        time.sleep(pause)
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/standin/iteration-{it}.json", Body=json.dumps(got)
        )
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/model/model_{it}.pb", Body=f"checkpoint {it}".encode()
        )
        r.set("standin:iteration", it + 1)
        log("iteration", it, "done with", len(got), "episodes")
    r.set("standin:finished", 1)
    while True:
        time.sleep(3600)


def frame(text, n):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (480, 360), (20, 60, 20))
    draw = ImageDraw.Draw(img)
    draw.text((20, 20), text, fill=(255, 255, 255))
    draw.text((20, 330), f"frame {n}", fill=(200, 200, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def serve_video(text):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.startswith("/stream"):
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            n = 0
            try:
                while True:
                    data = frame(text, n)
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(data)).encode()
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


def robomaker(args):
    import redis
    import yaml

    slot = int(os.environ["DOCKER_REPLICA_SLOT"])
    idx = slot - 1
    bucket = os.environ["SAGEMAKER_SHARED_S3_BUCKET"]
    prefix = os.environ["SAGEMAKER_SHARED_S3_PREFIX"]
    multi = os.environ.get("MULTI_CONFIG")
    name = (
        json.loads(multi)["multi_config"][idx]["config_file"]
        if multi
        else os.environ["S3_YAML_NAME"]
    )
    client = s3()
    params = yaml.safe_load(
        client.get_object(Bucket=bucket, Key=prefix + "/" + name)["Body"].read()
    )
    world, workers = params["WORLD_NAME"], int(params["NUM_WORKERS"])
    log("slot", slot, "world", world, "mode", args[:1], "params", name)
    serve_video(f"slot {slot}\n{world}")
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
    share = episodes // workers + (1 if idx < episodes % workers else 0)
    it = int(r.get("standin:iteration") or 0)  # a late joiner (moved slot) starts here
    while not r.get("standin:finished"):
        if int(r.get("standin:iteration") or 0) == it:
            for j in range(share):
                r.rpush(
                    f"episodes:{it}",
                    json.dumps(
                        {
                            "iteration": it,
                            "slot": slot,
                            "world": world,
                            "episode": idx + j * workers,
                        }
                    ),
                )
            while int(r.get("standin:iteration") or 0) <= it and not r.get("standin:finished"):
                time.sleep(0.2)
            it += 1
        time.sleep(0.1)
    log("training finished")
    while True:
        time.sleep(3600)


ROLES = {"minio": minio, "rl_coach": rl_coach, "trainer": trainer, "robomaker": robomaker}

if __name__ == "__main__":
    ROLES[ROLE](sys.argv[2:])
