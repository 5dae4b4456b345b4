"""invoke train end to end on the test bed, with the stand-in simapp (DEEPRACER.md's contract)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Run, invoke, schema_ok
from tests.testbed import TestBed
from tests.testbed.analysis_checks import check_log_analysis
from tests.testbed.drfc_run import (
    PREFIX,
    SAGEMAKER,
    container_ids,
    containers,
    iterations,
    s3,
    write_drfc,
)
from tests.testbed.droa_checks import check_droa
from tests.testbed.metrics_checks import STACK, check_metrics, start_metrics
from tests.testbed.model_out import (
    check_car_model,
    check_increment_training,
    check_s3_shell,
    check_upload_model,
)


def test_five_workers_on_three_hosts_train_as_planned(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    bed, env_dir = fleet
    inv = str(bed.inventory)
    plan = invoke("plan", "--inventory", inv, "--env-dir", str(env_dir), "--json")
    assert plan.code == 0, plan.stderr
    schema_ok("plan", plan.json)
    planned = {w["slot"]: w for w in plan.json["plan"]["workers"]}
    start_metrics(bed, inv, env_dir)  # before training, as DRfC's docs/metrics.md has it
    run: Run = invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--json")
    assert run.code == 0, run.stdout[-3000:] + run.stderr
    schema_ok("train", run.json)
    try:
        running = containers(bed)
        for slot, w in planned.items():
            assert f"drfleet-robomaker-{slot}" in running[w["host"]]
        assert {"drfleet-minio", "drfleet-rlcoach"} <= set(running["h1"])
        its = iterations(bed, 2)
        for it in its:
            assert len(it) == 10  # exactly num_episodes_between_training
            per_slot = Counter(e["slot"] for e in it)
            assert per_slot == {s: w["episodes"] for s, w in planned.items()}
            assert {e["slot"]: e["world"] for e in it} == {
                s: w["world"] for s, w in planned.items()
            }
        assert {w["world"] for w in planned.values()} == {
            "reInvent2019_track",
            "Monaco",
            "Bowtie_track",
        }
        status = invoke("status", "--inventory", inv, "--json")
        assert status.code == 0, status.stderr
        schema_ok("status", status.json)
        states = {
            c["name"]: c["state"] for h in status.json["hosts"].values() for c in h["containers"]
        }
        assert len(states) == 7 + len(STACK) and set(states.values()) == {"running"}
        check_status_only_reads(inv, env_dir, tmp_path)
        logs = invoke("logs", "--inventory", inv, "--worker", "2", "--tail", "50")
        # run.sh's own line: the arguments and MULTI_CONFIG reached it through /bin/bash -c
        assert (
            "Starting as worker 1, using world Monaco and configuration training_params_2.yaml."
            in logs.stdout
        )
        assert "altered for worker 1" in logs.stdout  # the scripts dir reached its host
        lines = invoke("logs", "-i", inv, "--worker", "2", "--tail", "50", "--json")
        docs = [json.loads(x) for x in lines.stdout.splitlines()]  # JSON Lines
        for d in docs:
            schema_ok("logs-line", d)
        assert docs and {d["host"] for d in docs} == {planned[2]["host"]}
        assert {d["container"] for d in docs} == {"drfleet-robomaker-2"}
        assert {d["stream"] for d in docs} <= {"stdout", "stderr"} and all(d["time"] for d in docs)
        assert any("Starting as worker 1" in d["line"] for d in docs)
        watch = subprocess.Popen(
            [sys.executable, "-m", "invoke", "status", "-i", inv, "--watch", "--json"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:  # --watch --json: one document per line, again and again
            seen = [json.loads(watch.stdout.readline()) for _ in range(2)]  # type: ignore[union-attr]
            assert all(len(d["hosts"]) == 3 for d in seen)
        finally:
            watch.kill()
            watch.wait()
        check_worker_reports(bed, planned)
        check_robomaker_stats(inv, env_dir, planned)
        check_metrics(bed, inv, env_dir, len(planned))
        check_log_analysis(bed, inv, env_dir, planned)
        vnc = invoke("vnc", "--worker", "2", "--inventory", inv)  # DR_GUI_ENABLE=False
        assert vnc.code == 2 and "DR_GUI_ENABLE=True" in vnc.stderr, vnc.stderr
        check_progress_in_status(bed, env_dir, planned)
        trainer = json.loads(
            s3(bed).get_object(Bucket="bucket", Key=f"{PREFIX}/standin/trainer.json")["Body"].read()
        )  # written by the sagemaker container start.py spawned through SageMaker's local mode
        assert trainer["hyperparameters"]["s3_prefix"] == PREFIX
        assert trainer["max_memory_steps"] is None  # DR_TRAIN_MAX_STEPS_PER_ITERATION unset
        assert [c for c in containers(bed)["h1"] if SAGEMAKER.match(c)]
        ids = container_ids(bed)
        again = invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--json")
        assert again.code == 0, again.stderr  # the same run, live: converge, restart nothing
        assert again.json["resumed"] and again.json["uploaded"] == []
        assert container_ids(bed) == ids
        text = invoke("train", "--inventory", inv, "--env-dir", str(env_dir))
        assert text.code == 0 and "nothing uploaded; hosts converged" in text.stdout
        assert container_ids(bed) == ids
        hp = env_dir / "custom_files" / "hyperparameters.json"
        original = hp.read_text()
        hp.write_text(original.replace("10", "12"))
        try:
            changed = invoke("train", "--inventory", inv, "--env-dir", str(env_dir))
        finally:
            hp.write_text(original)
        assert changed.code == 2  # other settings while it runs: refused, nothing touched
        assert "custom_files/hyperparameters.json" in changed.stderr
        assert "drfleet stop" in changed.stderr
        assert container_ids(bed) == ids
        # generations count in the run record (1, 2, 3 for three trains), never a clock; a
        # host holding a newer assignment of this run (another controller's) wins: train is
        # refused before any host is told, and the agent itself refuses an older one
        record = json.loads((env_dir / ".drfleet" / "run.json").read_text())
        assert record["generation"] == again.json["generation"] + 1  # `text` was the third
        assert again.json["generation"] == run.json["generation"] + 1
        trainer = plan.json["plan"]["trainer"]["host"]
        newer = record["generation"] + 1000
        stack = "/var/lib/drfleet/stacks/deepracer-0.json"
        bump = (
            f'python3 -c \'import json; d = json.load(open("{stack}")); '
            f'd["generation"] = {newer}; print(json.dumps(d))\' | python3 '
            "/usr/local/lib/drfleet/drfleet-agent.pyz apply --state-dir /var/lib/drfleet"
        )
        bed.exec(trainer, bump)
        refused = invoke("train", "--inventory", inv, "--env-dir", str(env_dir))
        assert refused.code == 2, refused.stdout + refused.stderr
        assert f"{trainer} holds generation {newer} of stack deepracer-0" in refused.stderr
        assert "Nothing was changed" in refused.stderr
        assert container_ids(bed) == ids
        older = bed.exec(
            trainer,
            f'python3 -c \'import json; d = json.load(open("{stack}")); '
            'd["generation"] = 1; print(json.dumps(d))\' | python3 '
            "/usr/local/lib/drfleet/drfleet-agent.pyz apply --state-dir /var/lib/drfleet "
            "2>&1; echo exit=$?",
        )
        assert f"holds generation {newer}, newer than 1" in older and "exit=2" in older
        check_model_way_out(bed, env_dir, tmp_path)
        check_custom_files_up_and_down(bed, env_dir, tmp_path)
        check_upload_model(bed, env_dir, tmp_path)
        check_car_model(bed, env_dir, tmp_path)
        check_droa(bed, env_dir, tmp_path)
        check_s3_shell(bed, env_dir)
        # the agent's desired states hold the minio credentials: root's alone on every host
        for h in ("h1", "h2", "h3"):
            modes = bed.exec(h, "stat -c '%n %a' /var/lib/drfleet/stacks /var/lib/drfleet/stacks/*")
            assert modes.split()[1] == "700" and set(modes.split()[3::2]) == {"600"}, modes
        # SageMaker's local mode wrote the job's environment, the run's keys with it, into its
        # job folder's docker-compose.yaml (sagemaker local/image.py); stop removes it
        jobs = bed.exec("h1", "grep -rls AWS_SECRET_ACCESS_KEY /tmp/sagemaker; true").split()
        assert any(j.endswith("/docker-compose.yaml") for j in jobs), jobs
        # stop -C says what stop would end, host by host, and ends nothing
        live = containers(bed)
        check = invoke("stop", "--inventory", inv, "-C", "--json")
        assert check.code == 0 and check.json["check"], check.stdout + check.stderr
        schema_ok("stop", check.json)
        would = {h: sorted(r["would_stop"]) for h, r in check.json["hosts"].items()}
        assert would == {h: sorted(names) for h, names in live.items()}, (would, live)
        assert containers(bed) == live
    finally:
        stop = invoke("stop", "--inventory", inv)
    assert stop.code == 0, stop.stderr
    assert containers(bed) == {"h1": [], "h2": [], "h3": []}  # the sagemaker one included
    assert bed.exec("h1", "ls -A /tmp/sagemaker").split() == []  # no job folder, no keys
    check_increment_training(bed, env_dir)  # minio (recreated) still holds the model


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def check_status_only_reads(inv: str, env_dir: Path, tmp_path: Path) -> None:
    """status writes and locks nothing (issue 26): from an env dir of this run whose minio
    keys are not yet the fleet's and that holds no lock, it reads the run's progress through
    the fleet minio's own keys and leaves every file byte for byte, and makes none."""
    reader = tmp_path / "reader"
    shutil.copytree(env_dir, reader)
    (reader / ".drfleet" / "run.lock").unlink(missing_ok=True)
    keys = reader / ".drfleet" / "minio-credentials.json"
    keys.write_text(json.dumps({"access_key": "notadopted", "secret_key": "n" * 48}))
    keys.chmod(0o600)
    before = _files(reader)
    st = invoke("status", "--inventory", inv, "--env-dir", str(reader), "--json")
    assert st.code == 0, st.stdout[-2000:] + st.stderr
    assert "error" not in st.json["run"]["progress"], st.json["run"]["progress"]
    assert _files(reader) == before


def check_progress_in_status(bed: TestBed, env_dir: Path, planned: dict[int, Any]) -> None:
    """status shows how training goes, from the run's S3: the iterations the trainer saved,
    and per worker its episodes and the mean reward and progress of its latest iteration's
    share (the stand-in's workers score 10 * (iteration + 1) + idx and progress
    min(100, 30 + 20 * iteration + idx) in every episode)."""
    args = ("--inventory", str(bed.inventory), "--env-dir", str(env_dir))
    deadline = time.monotonic() + 60
    while True:
        st = invoke("status", *args, "--json")
        assert st.code == 0, st.stderr
        progress = st.json["run"]["progress"]
        if progress.get("iterations") == 2:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(1)
    assert progress["workers"] == {
        str(slot): {
            "episodes": 2 * w["episodes"],
            "reward": float(20 + slot - 1),
            "progress": float(min(100, 50 + slot - 1)),
        }
        for slot, w in planned.items()
    }
    text = invoke("status", *args)
    assert "training: 2 iterations saved" in text.stdout, text.stdout
    assert f"worker 5: {2 * planned[5]['episodes']} episodes, latest reward 24" in text.stdout


def test_images_streamed_from_the_controller_show_bytes_and_rate(
    fleet: tuple[TestBed, Path],
) -> None:
    """Provision sent the simapp image (hundreds of MB) from this controller into the fleet,
    relayed host to host; its output, not a terminal, showed each host's copy moving: bytes
    of the total, and the rate."""
    bed, _ = fleet
    log: str = bed.provision_log  # type: ignore[attr-defined]
    for h in ("h1", "h2", "h3"):
        moving = re.findall(
            rf"^{h}: image drfleet-standin/simapp:1.0-cpu from controller \(relayed\): "
            r"[\d.]+ [KMG]?i?B of [\d.]+ [MG]iB, [\d.]+ [KMG]?i?B/s",
            log,
            re.M,
        )
        assert moving, log[-3000:]


def test_one_host_one_worker(fleet: tuple[TestBed, Path], tmp_path: Path) -> None:
    """A fleet of one host (an inventory naming h1 alone): one worker, `run.sh run`."""
    bed, _ = fleet
    env_dir = write_drfc(tmp_path / "drfc1", 1, {}, 4)
    path = bed.write_inventory(tmp_path / "one.yml", worker_vcpus=1, trainer_vcpus=1)
    doc = yaml.safe_load(path.read_text())
    doc["all"]["hosts"] = {"h1": doc["all"]["hosts"]["h1"]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    inv = str(path)
    run = invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--wipe", "--json")
    assert run.code == 0, run.stdout[-3000:] + run.stderr
    assert {w["host"] for w in run.json["plan"]["workers"]} == {"h1"}
    try:
        its = iterations(bed, 2)
        assert [len(i) for i in its] == [4, 4]
        assert {e["slot"] for i in its for e in i} == {1}
        spec = json.loads(bed.exec("h1", "docker inspect drfleet-robomaker-1"))[0]
        assert spec["Config"]["Entrypoint"] == ["/bin/bash", "-c"]
        assert spec["Config"]["Cmd"] == ["/opt/ml/code/run.sh run distributed_training.launch.py"]
        assert not [e for e in spec["Config"]["Env"] if e.startswith("MULTI_CONFIG=")]
        assert spec["HostConfig"]["Init"] is True
        report = worker_report(bed, 0)
        assert report["runsh_args"] == ["run", "distributed_training.launch.py"]
        assert report["rollout_idx"] == 0 and report["s3_yaml_name"] == "training_params.yaml"
    finally:
        assert invoke("stop", "--inventory", inv).code == 0
    assert containers(bed) == {"h1": [], "h2": [], "h3": []}


def test_a_host_that_cannot_reach_the_trainer_is_named(fleet: tuple[TestBed, Path]) -> None:
    bed, env_dir = fleet
    inv = str(bed.inventory)
    drop = "iptables -{} INPUT -p udp --dport 4789 -j DROP"  # the overlay's VXLAN traffic
    bed.exec("h3", drop.format("I"))
    try:
        run = invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--wipe")
        assert run.code == 2
        assert (
            "h3: cannot reach minio on the trainer h1 over the sagemaker-local overlay"
            in run.stderr
        )
        assert "4789/udp" in run.stderr and "9000/tcp" in run.stderr
        assert "nothing was started on the worker hosts" in run.stderr
        assert not [c for c in containers(bed)["h3"] if c.startswith("drfleet-robomaker")]
        assert not [c for c in containers(bed)["h2"] if c.startswith("drfleet-robomaker")]
    finally:
        bed.exec("h3", drop.format("D"))
    # minio kept what it holds (the real one keeps /data across runs): an earlier run's
    # model in the prefix is refused unless --wipe, and nothing starts
    s3(bed).put_object(Bucket="bucket", Key=f"{PREFIX}/model/model_7.pb", Body=b"earlier")
    kept = invoke("train", "--inventory", inv, "--env-dir", str(env_dir))
    assert kept.code != 0, kept.stdout[-2000:]
    assert f"s3://bucket/{PREFIX}/ already holds" in kept.stderr and "--wipe" in kept.stderr
    assert not [c for h in containers(bed).values() for c in h if "robomaker" in c]
    assert s3(bed).get_object(Bucket="bucket", Key=f"{PREFIX}/model/model_7.pb")["Body"].read()
    try:
        run = invoke("train", "--inventory", inv, "--env-dir", str(env_dir), "--wipe")
        assert run.code == 0, run.stdout[-2000:] + run.stderr
        assert len(iterations(bed, 1)[0]) == 10
        with pytest.raises(s3(bed).exceptions.NoSuchKey):  # --wipe removed the earlier run's
            s3(bed).get_object(Bucket="bucket", Key=f"{PREFIX}/model/model_7.pb")
    finally:
        assert invoke("stop", "--inventory", inv).code == 0
    assert containers(bed) == {"h1": [], "h2": [], "h3": []}


def check_model_way_out(bed: TestBed, env_dir: Path, tmp_path: Path) -> None:
    """download-model copies the model's prefix here byte for byte; import-model puts the
    folder back under a prefix of its own, and will not overwrite one that holds a model."""
    args = ("-i", str(bed.inventory), "--env-dir", str(env_dir), "--json")
    out = tmp_path / "model"
    dl = invoke("download-model", "--out", str(out), *args)
    assert dl.code == 0, dl.stdout[-2000:] + dl.stderr
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert dl.json["files"] == len(files) and files
    schema_ok("download-model", dl.json)
    client = s3(bed)
    for p in files:
        key = f"{PREFIX}/{p.relative_to(out).as_posix()}"
        assert p.read_bytes() == client.get_object(Bucket="bucket", Key=key)["Body"].read()
    assert not list(out.rglob(".*.part"))  # every file landed whole
    imp = invoke("import-model", "--src", str(out), "--prefix", "imported-1", *args)
    assert imp.code == 0, imp.stdout[-2000:] + imp.stderr
    schema_ok("import-model", imp.json)
    listed = client.list_objects_v2(Bucket="bucket", Prefix="imported-1/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(
        f"imported-1/{p.relative_to(out).as_posix()}" for p in files
    )
    again = invoke("import-model", "--src", str(out), "--prefix", "imported-1", *args)
    assert again.code == 2 and "already holds" in again.stderr and "--wipe" in again.stderr


def check_custom_files_up_and_down(bed: TestBed, env_dir: Path, tmp_path: Path) -> None:
    """upload-custom-files puts only what changed (DRfC's aws s3 sync); download-custom-files
    fills the custom_files/ of an env dir that has only its .env files, as the run's S3 holds
    them (DRfC's dr-download-custom-files, for a new machine)."""
    args = ("-i", str(bed.inventory), "--json")
    same = invoke("upload-custom-files", "--env-dir", str(env_dir), *args)
    assert same.code == 0, same.stdout[-2000:] + same.stderr
    assert same.json["files"] == 0  # train put them already
    hyper = env_dir / "custom_files" / "hyperparameters.json"
    before = hyper.read_bytes()
    try:
        hyper.write_bytes(before.replace(b"{", b'{"lr_note": 1, ', 1))
        up = invoke("upload-custom-files", "--env-dir", str(env_dir), *args)
        assert up.code == 0 and up.json["files"] == 1, up.stdout[-2000:] + up.stderr
        schema_ok("upload-custom-files", up.json)
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        for name in ("system.env", "run.env"):
            (fresh / name).write_bytes((env_dir / name).read_bytes())
        # no keys of its own yet: it takes the running minio's, as a new machine would
        down = invoke("download-custom-files", "--env-dir", str(fresh), *args)
        assert down.code == 0, down.stdout[-2000:] + down.stderr
        schema_ok("download-custom-files", down.json)
        got = {p.name: p.read_bytes() for p in (fresh / "custom_files").iterdir()}
        for p in (env_dir / "custom_files").iterdir():
            assert got[p.name] == p.read_bytes(), p.name
        held = s3(bed).list_objects_v2(Bucket="bucket", Prefix="custom_files/")["KeyCount"]
        assert down.json["files"] == held == len(got)
    finally:
        hyper.write_bytes(before)
        invoke("upload-custom-files", "--env-dir", str(env_dir), *args)


def worker_report(bed: TestBed, idx: int) -> dict[str, Any]:
    """What the stand-in's rollout worker `idx` was started with (run.sh's arguments, its
    index, params file, world, and the CPUs its Gazebo server runs on)."""
    body = s3(bed).get_object(Bucket="bucket", Key=f"{PREFIX}/standin/workers/{idx}.json")
    doc: dict[str, Any] = json.loads(body["Body"].read())
    return doc


def check_worker_reports(bed: TestBed, planned: dict[int, dict[str, Any]]) -> None:
    beyond = 0
    for slot, w in planned.items():
        r = worker_report(bed, slot - 1)
        assert r["runsh_args"] == ["multi", "distributed_training.launch.py"], r
        assert (r["s3_yaml_name"], r["world_name"]) == (w["config_file"], w["world"]), r
        assert r["params_world"] == w["world"] and r["num_workers"] == len(planned)
        assert "kvs_stream" in r["topics"]  # DR_CAMERA_KVS_ENABLE=True (init's default)
        assert r["rtf_override"] == r["world_rtf"] == "1.5", r  # DR_TRAIN_RTF, in the world
        cpus = {int(c) for c in r["gazebo_cpus"].replace("-", ",").split(",")}
        assert cpus <= set(range(r["cpu_count"])), r  # on CPUs its host has
        beyond += 2 * (slot - 1) + 1 >= r["cpu_count"]  # the simapp's own pair would not exist
    assert beyond >= 3


def check_robomaker_stats(inv: str, env_dir: Path, planned: dict[int, dict[str, Any]]) -> None:
    """robomaker-stats reads every worker's Gazebo at once (its world's statistics topic):
    each on the host the plan gave it, simulating at the real-time factor DR_TRAIN_RTF set."""
    args = ("--inventory", inv, "--env-dir", str(env_dir))
    got = invoke("robomaker-stats", *args, "--duration", "2", "--json")
    assert got.code == 0, got.stdout[-2000:] + got.stderr
    schema_ok("robomaker-stats", got.json)
    workers = {w["slot"]: w for w in got.json["workers"]}
    assert sorted(workers) == sorted(planned)
    for slot, w in workers.items():
        assert (w["host"], w["world"]) == (planned[slot]["host"], planned[slot]["world"]), w
        assert abs(w["factor"] - 1.5) < 0.1 and w["samples"] >= 5 and w["paused"] is False, w
    one = invoke("robomaker-stats", *args, "--worker", "2", "--duration", "1")
    said = f"worker 2 on {planned[2]['host']} (Monaco): real-time factor 1.50"
    assert one.code == 0 and one.stdout.startswith(said), one.stdout + one.stderr
    none = invoke("robomaker-stats", *args, "--worker", "9")
    assert none.code == 2 and "the run has no worker 9; its workers are 1, 2, 3, 4, 5" in (
        none.stderr
    )


HOSTILE = ["$(touch /tmp/pwned)", "`touch /tmp/pwned`", "a; touch /tmp/pwned", "'\";|&<>"]


def test_hostile_values_are_passed_literally_and_never_run(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    bed, _ = fleet
    env_dir = write_drfc(tmp_path / "drfc", 2, {2: "Monaco"}, 4)
    run_env = env_dir / "run.env"
    run_env.write_text(
        run_env.read_text()
        + f"DR_CAR_NAME='{HOSTILE[0]}'\n"
        + f'DR_RACER_NAME="{HOSTILE[1].replace("`", chr(92) + "`")}"\n'
    )
    inv = bed.write_inventory(
        tmp_path / "inv.yml", worker_vcpus=1, trainer_vcpus=1, note=HOSTILE[0], other=HOSTILE[3]
    )
    Path("/tmp/pwned").unlink(missing_ok=True)
    try:
        # the simapp runs a car color in a shell line and evaluates a world name as Python:
        # such values are refused, naming the line, before anything starts
        worker2 = env_dir / "worker-2.env"
        for text, where in (
            ("DR_WORLD_NAME='Monaco; touch /tmp/pwned'\n", f"{worker2}:1"),
            ("DR_WORLD_NAME=Monaco\nDR_CAR_COLOR='a; touch /tmp/pwned'\n", f"{worker2}:2"),
        ):
            worker2.write_text(text)
            for command in ("plan", "train"):
                refused = invoke(command, "--inventory", str(inv), "--env-dir", str(env_dir))
                assert refused.code == 2 and where in refused.stderr, refused.stderr
                assert "not a plain name" in refused.stderr
        worker2.write_text("DR_WORLD_NAME=Monaco\n")
        assert containers(bed) == {"h1": [], "h2": [], "h3": []}
        plan = invoke("plan", "--inventory", str(inv), "--env-dir", str(env_dir), "--json")
        assert plan.code == 0, plan.stderr
        assert (
            invoke(
                "train",
                "--dry-run",
                "--out",
                str(tmp_path / "out"),
                "--inventory",
                str(inv),
                "--env-dir",
                str(env_dir),
            ).code
            == 0
        )
        run = invoke("train", "--inventory", str(inv), "--env-dir", str(env_dir), "--wipe")
        assert run.code == 0, run.stderr
        iterations(bed, 1)  # training really ran with these values
        params = s3(bed).get_object(Bucket="bucket", Key=f"{PREFIX}/training_params_1.yaml")
        text = params["Body"].read().decode()
        assert "'CAR_NAME': '$(touch /tmp/pwned)'" in text  # passed literally
        assert "'RACER_NAME': '`touch /tmp/pwned`'" in text
        worker = json.loads(
            bed.exec(
                next(h for h, names in containers(bed).items() if "drfleet-robomaker-2" in names),
                "docker inspect drfleet-robomaker-2",
            )
        )[0]
        assert "WORLD_NAME=Monaco" in worker["Config"]["Env"]
        # host names and addresses are refused before any host is contacted, by every command
        doc = yaml.safe_load(inv.read_text())
        hosts = doc["all"]["hosts"]
        hosts["h2; touch /tmp/pwned"] = hosts.pop("h2")
        hosts["h3"]["address"] = "$(touch /tmp/pwned)"
        bad = tmp_path / "bad.yml"
        bad.write_text(yaml.safe_dump(doc))
        for command in ("facts", "provision", "plan", "train", "status", "stop"):
            extra = () if command == "facts" else ("--env-dir", str(env_dir))
            refused = invoke(command, "--inventory", str(bad), *extra)
            assert refused.code == 2, (command, refused.stdout, refused.stderr)
            assert f"{bad}:" in refused.stderr and "is not valid" in refused.stderr, command
            assert "Traceback" not in refused.stderr
    finally:
        invoke("stop", "--inventory", str(inv))
    assert not Path("/tmp/pwned").exists()
    for name in bed.hosts:
        assert bed.exec(name, "ls /tmp/pwned 2>/dev/null; true") == ""


def test_a_host_provisioned_without_the_taskset_shim_is_named_before_anything_starts(
    fleet: tuple[TestBed, Path],
) -> None:
    """A host provisioned by an older drfleet lacks the shim that pins Gazebo to its own CPUs:
    train names the host and the fix, and starts nothing anywhere."""
    bed, env_dir = fleet
    shim = "/usr/local/lib/drfleet/taskset"
    bed.exec("h2", f"mv {shim} {shim}.away")
    try:
        run = invoke("train", "--inventory", str(bed.inventory), "--env-dir", str(env_dir))
        assert run.code == 2, run.stdout + run.stderr
        assert "h2 lacks /usr/local/lib/drfleet/taskset" in run.stderr, run.stderr
        assert "drfleet provision --host h2" in run.stderr
        assert containers(bed) == {"h1": [], "h2": [], "h3": []}
    finally:
        bed.exec("h2", f"mv {shim}.away {shim}")
