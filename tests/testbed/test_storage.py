"""DR_CLOUD=remote (issue 13): the run's S3 is an S3 API of the user's own (a minio on a NAS
or another host), at DR_REMOTE_MINIO_URL, with the keys of the AWS profile
DR_LOCAL_S3_PROFILE. Here it is the stand-in minio (which refuses other keys, as minio does)
on h3, a worker host that is not the trainer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import invoke, schema_ok
from tests.testbed import TestBed, nas
from tests.testbed.drfc_run import PREFIX, SAGEMAKER, containers, write_drfc
from tests.testbed.nas import KEY, SECRET

NAS = "test-nas"  # not drfleet-*: the tests look for those


def drfc_on(tmp: Path, cloud: str, bucket: str, profile: str) -> tuple[Path, str]:
    """Two workers' DRfC files whose run's S3 is DR_CLOUD=cloud, the bucket and the profile:
    the env dir and system.env's text."""
    env_dir = write_drfc(tmp / "drfc", 2, {2: "Monaco"}, 4, {"standin_iterations": 1})
    base = (env_dir / "system.env").read_text().replace("DR_CLOUD=local", f"DR_CLOUD={cloud}")
    base = base.replace("DR_LOCAL_S3_BUCKET=bucket", f"DR_LOCAL_S3_BUCKET={bucket}")
    base = base.replace("DR_LOCAL_S3_PROFILE=minio", f"DR_LOCAL_S3_PROFILE={profile}")
    assert f"DR_LOCAL_S3_PROFILE={profile}" in base and f"DR_LOCAL_S3_BUCKET={bucket}" in base
    return env_dir, base


def refused(bed: TestBed, env_dir: Path, env: dict[str, str], *expected: str) -> None:
    """train is refused (exit 2) with each expected text, and no drfleet container starts."""
    run = invoke("train", "-i", str(bed.inventory), "--env-dir", str(env_dir), "--wipe", env=env)
    assert run.code == 2, run.stdout[-2000:] + run.stderr
    for text in expected:
        assert text in run.stderr, run.stderr
    assert "nothing was started" in run.stderr
    assert not [c for h in containers(bed).values() for c in h if c.startswith("drfleet-")]


def nas_up(bed: TestBed) -> str:
    """The stand-in minio on h3's port 9000 (from the simapp image h3 has as a worker host)."""
    bed.exec(
        "h3",
        f"docker run -d --name {NAS} -p 9000:9000 -e MINIO_ROOT_USER={KEY} "
        f"-e MINIO_ROOT_PASSWORD={SECRET} --entrypoint python3 {nas.IMAGE} "
        + " ".join(nas.COMMAND),
    )
    url = f"http://{bed.hosts['h3'].address}:9000"
    client = nas.client(url)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="nasbucket")
            return url
        except Exception:
            assert time.monotonic() < deadline, "the NAS stand-in did not start"
            time.sleep(0.5)


def test_remote_s3_trains_without_minio_and_bad_input_is_named(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    bed, _ = fleet
    bed.write_inventory(worker_vcpus=1, trainer_vcpus=1)
    url = nas_up(bed)
    try:
        env_dir, base = drfc_on(tmp_path, "remote", "nasbucket", "nas")
        system = env_dir / "system.env"
        creds = tmp_path / "credentials"
        env = {
            "AWS_SHARED_CREDENTIALS_FILE": str(creds),
            "AWS_CONFIG_FILE": str(tmp_path / "config"),
        }
        (tmp_path / "config").write_text("")
        args = ("-i", str(bed.inventory), "--env-dir", str(env_dir))

        def refused_with(system_text: str, secret: str, *expected: str) -> None:
            system.write_text(system_text)
            creds.write_text(
                f"[nas]\naws_access_key_id = {KEY}\naws_secret_access_key = {secret}\n"
            )
            refused(bed, env_dir, env, *expected)

        with_url = base + f"DR_REMOTE_MINIO_URL={url}\n"
        refused_with(with_url, "wrong", "DR_LOCAL_S3_PROFILE=nas:", "refuses its keys")
        refused_with(
            with_url.replace("=nasbucket", "=nobucket"),
            SECRET,
            "DR_LOCAL_S3_BUCKET=nobucket: no such bucket at " + url,
        )
        dead = url.replace(":9000", ":9009")
        refused_with(base + f"DR_REMOTE_MINIO_URL={dead}\n", SECRET, f"DR_REMOTE_MINIO_URL={dead}:")
        system.write_text(with_url)
        run = invoke("train", *args, "--wipe", "--json", env=env)
        assert run.code == 0, run.stdout[-2000:] + run.stderr
        try:
            store = nas.client(url)
            deadline = time.monotonic() + 120
            key = f"{PREFIX}/standin/iteration-0.json"
            while not store.list_objects_v2(Bucket="nasbucket", Prefix=key).get("Contents"):
                assert time.monotonic() < deadline, "no iteration trained against the NAS"
                time.sleep(1)
            episodes = json.loads(store.get_object(Bucket="nasbucket", Key=key)["Body"].read())
            assert sorted(e["slot"] for e in episodes) == [1, 1, 2, 2]
            running = containers(bed)
            assert not [c for h in running.values() for c in h if c == "drfleet-minio"]
            rlcoach = json.loads(bed.exec("h1", "docker inspect drfleet-rlcoach"))[0]
            cenv = dict(e.split("=", 1) for e in rlcoach["Config"]["Env"])
            assert cenv["S3_ENDPOINT_URL"] == url and cenv["AWS_ACCESS_KEY_ID"] == KEY
            out = tmp_path / "model"
            dl = invoke("download-model", "--out", str(out), "--json", *args, env=env)
            schema_ok("download-model", dl.json)
            assert dl.code == 0 and (out / "model" / "deepracer_checkpoints.json").exists(), (
                dl.stdout + dl.stderr
            )
        finally:
            stop = invoke("stop", *args, env=env)
            assert stop.code == 0, stop.stderr
    finally:
        bed.exec("h3", f"docker rm -f {NAS}")


def trained(client: Any, bucket: str) -> None:
    """The run's first iteration, with both workers' episodes, lands in the bucket."""
    deadline = time.monotonic() + 120
    key = f"{PREFIX}/standin/iteration-0.json"
    while not client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents"):
        assert time.monotonic() < deadline, f"no iteration trained in {bucket}"
        time.sleep(1)
    episodes = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert sorted(e["slot"] for e in episodes) == [1, 1, 2, 2]


def test_aws_s3_trains_with_the_profiles_keys_and_no_endpoint_in_the_containers(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    """DR_CLOUD=aws: the bucket in the user's account, reached from here through the standard
    AWS variables and a profile file, and from the containers by S3's own names over TLS
    (aws_standin). The containers' S3 env is what docker-compose-aws.yml and -keys.yml give;
    no minio starts. A missing bucket, wrong keys and credentials that would need instance
    roles the hosts lack are each named, with nothing started."""
    from tests.testbed.aws_standin import KEY, ROLE_SECRET, SECRET, aws_account, instance_roles

    bed, _ = fleet
    bed.write_inventory(worker_vcpus=1, trainer_vcpus=1)
    with aws_account(bed, tmp_path) as aws:
        client, env = aws["client"], aws["env"]
        client.create_bucket(Bucket="awsbucket")
        env_dir, base = drfc_on(tmp_path, "aws", "awsbucket", "deepracer")
        system = env_dir / "system.env"
        creds = Path(env["AWS_SHARED_CREDENTIALS_FILE"])
        args = ("-i", str(bed.inventory), "--env-dir", str(env_dir))

        def keys(secret: str, token: str = "") -> None:
            creds.write_text(
                f"[deepracer]\naws_access_key_id = {KEY}\naws_secret_access_key = {secret}\n"
                + (f"aws_session_token = {token}\n" if token else "")
            )

        system.write_text(base)
        keys("wrong")
        refused(bed, env_dir, env, "DR_LOCAL_S3_PROFILE=deepracer: S3 refuses its credentials")
        keys(SECRET)
        system.write_text(base.replace("=awsbucket", "=nobucket"))
        refused(
            bed,
            env_dir,
            env,
            "DR_LOCAL_S3_BUCKET=nobucket: no such bucket in S3 (us-east-1)",
            "aws s3 mb s3://nobucket",
        )
        system.write_text(base)
        keys(SECRET, token="session-token")  # temporary: the containers would need roles
        refused(bed, env_dir, env, "no instance role reaches a container", "hop limit")
        for h in ("h1", "h2"):
            assert f"{h}:" in invoke("train", *args, "--wipe", env=env).stderr
        keys(SECRET)
        system.write_text(base)
        run = invoke("train", *args, "--wipe", "--json", env=env)
        assert run.code == 0, run.stdout[-2000:] + run.stderr
        try:
            trained(client, "awsbucket")
            assert not [c for h in containers(bed).values() for c in h if c == "drfleet-minio"]
            aws_yml = {
                "AWS_METADATA_SERVICE_TIMEOUT": "3",
                "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "5",
            }
            keys_yml = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
            compose = {**aws_yml, **keys_yml}
            checked = []
            for h, names in containers(bed).items():
                for name in names:
                    if name == "drfleet-rlcoach" or name.startswith("drfleet-robomaker-"):
                        inspected = json.loads(bed.exec(h, f"docker inspect {name}"))[0]
                        cenv = dict(e.split("=", 1) for e in inspected["Config"]["Env"])
                        assert "S3_ENDPOINT_URL" not in cenv, name
                        assert {k: cenv.get(k) for k in compose} == compose, name
                        checked.append(name)
            assert len(checked) == 3, checked
            names = client.list_objects_v2(Bucket="awsbucket", Prefix=f"{PREFIX}/training_params")
            assert len(names["Contents"]) == 2  # multi-config: one per worker
            for o in names["Contents"]:
                body = client.get_object(Bucket="awsbucket", Key=o["Key"])["Body"].read()
                assert b"S3_ENDPOINT_URL" not in body, o["Key"]
            listing = invoke(
                "s3",
                *args,
                "--command",
                'python3 -c \'import boto3; print(boto3.client("s3").list_objects_v2('
                f'Bucket="awsbucket", Prefix="{PREFIX}/model/")["KeyCount"])\'',
                env=env,
            )
            assert listing.code == 0 and int(listing.stdout.split()[-1]) > 0, listing.stderr
        finally:
            stop = invoke("stop", *args, env=env)
            assert stop.code == 0, stop.stderr

        # EC2 as it is usually set up: this machine's credentials are temporary, and every
        # host's instance role gives its containers theirs; no key reaches a host
        keys(SECRET, token="session-token")
        with instance_roles(bed):
            run = invoke("train", *args, "--wipe", "--json", env=env)
            assert run.code == 0, run.stdout[-2000:] + run.stderr
            try:
                trained(client, "awsbucket")
                for h, names in containers(bed).items():
                    ours = [n for n in names if n.startswith("drfleet-") or SAGEMAKER.match(n)]
                    for name in ours:
                        inspected = json.loads(bed.exec(h, f"docker inspect {name}"))[0]
                        cenv = dict(e.split("=", 1) for e in inspected["Config"]["Env"])
                        assert "AWS_ACCESS_KEY_ID" not in cenv, (h, name)
                        assert "AWS_SECRET_ACCESS_KEY" not in cenv, (h, name)
                    ids = bed.exec(
                        h, "docker ps -aq --no-trunc --filter name=drfleet- --filter name=-algo-1-"
                    ).split()
                    where = " ".join(
                        ["/var/lib/drfleet", "/tmp/sagemaker", "/root"]
                        + [f"/var/lib/docker/containers/{i}" for i in ids]
                    )
                    found = bed.exec(
                        h, f"grep -rlsF -e {KEY} -e {SECRET} -e {ROLE_SECRET} {where}; true"
                    )
                    assert not found.strip(), f"{h}: keys in {found}"
            finally:
                stop = invoke("stop", *args, env=env)
                assert stop.code == 0, stop.stderr
