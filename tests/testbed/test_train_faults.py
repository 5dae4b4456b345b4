"""Faults during training (issue 7): a worker host stopping, a host cut off and coming back
after its slots moved, and the controller killed in the middle of `train`."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import Run, invoke, killed, provision_args
from tests.testbed import TestBed, imds_standin
from tests.testbed.drfc_run import (
    NONSTOP,
    SAGEMAKER,
    container_ids,
    containers,
    iterations,
    trained,
    up,
    write_drfc,
)
from tests.testbed.evaluation_checks import check_evaluation

CUT = (  # every packet in or out of the host's only link, forwarded ones included
    "iptables -{op} INPUT -i eth0 -j DROP && iptables -{op} OUTPUT -o eth0 -j DROP && "
    "iptables -{op} FORWARD -i eth0 -j DROP && iptables -{op} FORWARD -o eth0 -j DROP"
)


def slots_where(bed: TestBed) -> dict[int, list[str]]:
    """slot -> the hosts where a robomaker container of that slot exists."""
    out: dict[int, list[str]] = {}
    for host, names in containers(bed).items():
        for n in names:
            if n.startswith("drfleet-robomaker-"):
                out.setdefault(int(n.rsplit("-", 1)[1]), []).append(host)
    return out


def env_of(bed: TestBed, host: str, name: str) -> dict[str, str]:
    spec = json.loads(bed.exec(host, f"docker inspect {name}"))[0]
    return dict(e.split("=", 1) for e in spec["Config"]["Env"])


def wait_for(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, message
        time.sleep(0.5)


SECOND = "rl-deepracer-second"


def goes_on(bed: TestBed, shares: dict[int, int]) -> None:
    """The next two iterations that start from now: every slot gives exactly its share (a
    missing slot stalls them), and each episode came from one worker alone (a slot running
    twice answers the trainer twice; the real trainer drops the second answer)."""
    n = trained(bed)
    for it in iterations(bed, 2, timeout=120, start=n + 1):
        assert Counter(e["slot"] for e in it) == shares
        assert [e["episode"] for e in it if e["answers"] != 1] == [], "a slot runs twice"


def check_second_run(bed: TestBed, first: Path, env_dir: Path) -> None:
    """DRfC's multi_run.md on a fleet: a second experiment with DR_RUN_ID=1 trains on the
    same hosts beside the live run 0, in the room it leaves; status, logs and stop address
    each run alone, and stopping run 1 leaves run 0 training, untouched."""
    write_drfc(env_dir, 2, {2: "Monaco"}, 4, NONSTOP)
    with (env_dir / "run.env").open("a") as fh:
        fh.write(f"DR_RUN_ID=1\nDR_LOCAL_S3_MODEL_PREFIX={SECOND}\n")
    inv = str(bed.inventory)
    args = ("--inventory", inv, "--env-dir", str(env_dir))
    ids = container_ids(bed)
    before = trained(bed)
    run = invoke("train", *args, "--json")
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    try:
        assert run.json["run"] == "1"
        placed = {w["slot"]: w["host"] for w in run.json["plan"]["workers"]}
        assert set(placed.values()) == {"h2", "h3"}  # the room run 0 leaves (h1: its trainer)
        notes = " ".join(run.json["plan"]["notes"])
        assert "vCPUs go to other runs" in notes and "minio" in notes  # the fleet's one minio
        keys = json.loads((env_dir / ".drfleet" / "minio-credentials.json").read_text())
        assert keys == json.loads((first / ".drfleet" / "minio-credentials.json").read_text())
        after = container_ids(bed)
        assert {n: i for n, i in after.items() if n in ids} == ids  # run 0 untouched
        new = set(after) - set(ids)
        sagemaker = {n for n in new if SAGEMAKER.match(n)}
        assert new - sagemaker == {"drfleet-1-rlcoach", "drfleet-1-robomaker-1",
                                   "drfleet-1-robomaker-2"}, new  # fmt: skip
        for slot, host in placed.items():
            spec = json.loads(bed.exec(host, f"docker inspect drfleet-1-robomaker-{slot}"))[0]
            bound = spec["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"]
            assert bound == str(8179 + slot)  # run 1's ports: 100 above run 0's
        # both train: run 1 under its prefix, run 0 as before
        second = {w["slot"]: w["episodes"] for w in run.json["plan"]["workers"]}
        (it,) = iterations(bed, 1, prefix=SECOND)  # every slot of run 1 its share
        assert Counter(e["slot"] for e in it) == second
        assert trained(bed) > before  # and run 0 trained on meanwhile
        # status, logs: each run alone
        st = invoke("status", *args, "--json")
        assert st.code == 0 and st.json["run"]["run_id"] == "1", st.stderr
        assert {s["state"] for s in st.json["run"]["slots"].values()} == {"running"}
        first_st = invoke("status", "--inventory", inv, "--env-dir", str(first), "--json")
        assert first_st.json["run"]["run_id"] == "0" and len(first_st.json["run"]["slots"]) == 3
        logs = invoke("logs", *args, "--worker", "2", "--tail", "20", "--json")
        lines = [json.loads(x) for x in logs.stdout.splitlines()]
        assert lines and {d["container"] for d in lines} == {"drfleet-1-robomaker-2"}
        # a third env dir with run 1's DR_RUN_ID would take its place: refused, naming it
        third = write_drfc(env_dir.parent / "third", 1, {}, 2)
        with (third / "run.env").open("a") as fh:
            fh.write("DR_RUN_ID=1\n")
        refused = invoke("train", "--inventory", inv, "--env-dir", str(third))
        assert refused.code == 2 and str(env_dir.resolve()) in refused.stderr, refused.stderr
        assert f"model prefix {SECOND}) as run 1" in refused.stderr
    finally:
        stop = invoke("stop", *args, "--json")
    assert stop.code == 0 and stop.json["run"] == "1", stop.stdout + stop.stderr
    left = container_ids(bed)
    assert left == ids, (left, ids)  # run 0's containers, its sagemaker and minio: all there
    # (run 0 training on: the caller's next goes_on)


def test_killed_worker_is_restarted_status_shows_it_training_goes_on(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    bed, _ = fleet
    env_dir = write_drfc(tmp_path / "drfc", 3, {2: "Monaco", 3: "Bowtie_track"}, 6, NONSTOP)
    (env_dir / "scripts").mkdir()  # mounted into the workers, and into the evaluation
    (env_dir / "scripts" / "alter_environment_1.sh").write_text("echo altered\n")
    with (env_dir / "system.env").open("a") as fh:
        fh.write("DR_ROBOMAKER_MOUNT_SCRIPTS_DIR=scripts\n")
    bed.write_inventory(worker_vcpus=1, trainer_vcpus=1)
    args = ("--inventory", str(bed.inventory), "--env-dir", str(env_dir))
    run = invoke("train", *args, "--wipe", "--json")
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    shares = {w["slot"]: w["episodes"] for w in run.json["plan"]["workers"]}
    host = next(w["host"] for w in run.json["plan"]["workers"] if w["slot"] == 2)
    try:
        goes_on(bed, shares)
        check_evaluation(bed, env_dir, lambda: goes_on(bed, shares))  # beside it; then removed
        # another env dir's train would take this run's place: refused, naming it
        other = write_drfc(tmp_path / "other", 1, {}, 2)
        ids = container_ids(bed)
        refused = invoke("train", "--inventory", str(bed.inventory), "--env-dir", str(other))
        assert refused.code == 2, refused.stdout + refused.stderr
        assert str(env_dir.resolve()) in refused.stderr and "--replace" in refused.stderr
        assert "Nothing was changed" in refused.stderr and container_ids(bed) == ids
        assert "another DR_RUN_ID" in refused.stderr
        check_second_run(bed, env_dir, tmp_path / "second")  # then run 0 goes on below
        bed.exec(host, "docker kill drfleet-robomaker-2")

        def restarted() -> bool:
            st = invoke("status", *args, "--json").json
            row = next(c for c in st["hosts"][host]["containers"] if c["name"].endswith("-2"))
            return bool(row["restarts"] == 1 and row["state"] == "running")

        wait_for(restarted, 60, "status never showed robomaker-2 restarted and running")
        table = invoke("status", *args)
        line = next(x for x in table.stdout.splitlines() if "drfleet-robomaker-2" in x)
        assert "running" in line and " 1 " in line  # the restarts column
        goes_on(bed, shares)
    finally:
        stop = invoke("stop", *args)
    assert stop.code == 0, stop.stderr


def test_lost_host_status_rebalance_cut_off_and_return(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    bed, _ = fleet
    env_dir = write_drfc(
        tmp_path / "drfc",
        3,
        {2: "Monaco", 3: "Bowtie_track"},
        6,
        NONSTOP,
    )
    inv = str(bed.inventory)
    bed.write_inventory(worker_vcpus=1, trainer_vcpus=1)
    args = ("--inventory", inv, "--env-dir", str(env_dir))
    run = invoke("train", *args, "--wipe", "--json")
    assert run.code == 0, run.stdout[-2000:] + run.stderr
    plan = {w["slot"]: w for w in run.json["plan"]["workers"]}
    trainer = run.json["plan"]["trainer"]["host"]
    # the host to lose: a worker host whose slots fit on the others (5 slots, 3 used)
    victim = next(w["host"] for w in plan.values() if w["host"] != trainer)
    lost = sorted(s for s, w in plan.items() if w["host"] == victim)
    shares = {s: w["episodes"] for s, w in plan.items()}

    def training_goes_on() -> None:
        goes_on(bed, shares)

    try:
        training_goes_on()
        before = container_ids(bed)
        bed.stop(victim)
        t0 = time.monotonic()
        st = invoke("status", *args, "--json")
        took = time.monotonic() - t0
        assert st.code == 1
        assert took < 15, f"status took {took:.1f} s with {victim} down"
        assert st.json["hosts"][victim]["reachable"] is False
        assert st.json["run"]["lost"] == {victim: lost}
        assert {st.json["run"]["slots"][str(s)]["state"] for s in lost} == {"lost"}
        text = invoke("status", *args)
        assert f"{victim} is unreachable: slots {', '.join(map(str, lost))} are lost" in (
            text.stdout
        )
        assert "drfleet train --rebalance" in text.stdout

        moved = invoke("train", "--rebalance", *args, "--json")
        assert moved.code == 0, moved.stdout[-2000:] + moved.stderr
        assert sorted(int(s) for s in moved.json["moved"]) == lost
        where = slots_where(bed)
        for slot in lost:
            to = moved.json["moved"][str(slot)]["to"]
            assert to != victim and where[slot] == [to]
            env = env_of(bed, to, f"drfleet-robomaker-{slot}")
            assert env["DOCKER_REPLICA_SLOT"] == str(slot)  # slot numbers kept
            assert env["WORLD_NAME"] == plan[slot]["world"]  # multi-config kept
            assert env["S3_YAML_NAME"] == plan[slot]["config_file"]
            assert (
                json.loads(env["MULTI_CONFIG"])["multi_config"][slot - 1]["world_name"]
                == (plan[slot]["world"])
            )
            logs = invoke("logs", "--inventory", inv, "--worker", str(slot), "--tail", "20")
            assert (  # run.sh's own line on the host it moved to
                f"Starting as worker {slot - 1}, using world {plan[slot]['world']} and "
                f"configuration {plan[slot]['config_file']}." in logs.stdout
            )
        training_goes_on()  # with the moved slots
        after = container_ids(bed)
        for name, cid in before.items():  # nothing that stayed was restarted
            if name in after and not any(name == f"drfleet-robomaker-{s}" for s in lost):
                assert after[name] == cid, f"{name} was restarted"

        # no room left: with only h1 and h2 in the inventory, cut h2 off
        other = next(h for h in ("h2", "h3") if h != victim and h != trainer)
        small = bed.write_inventory(tmp_path / "two.yml", worker_vcpus=1, trainer_vcpus=1)
        _drop_host(small, victim)
        small_args = ("--inventory", str(small), "--env-dir", str(env_dir))
        bed.exec(other, CUT.format(op="I"))
        try:
            t0 = time.monotonic()
            st = invoke("status", *small_args, "--json")
            assert time.monotonic() - t0 < 15 and st.json["hosts"][other]["reachable"] is False
            full = invoke("train", "--rebalance", *small_args)
            assert full.code == 2, full.stdout + full.stderr
            assert "no capacity left for the" in full.stderr and "nothing was moved" in full.stderr
            assert "more vCPUs" in full.stderr and "--rebalance" in full.stderr
        finally:
            bed.exec(other, CUT.format(op="D"))
        assert container_ids(bed) == after  # nothing moved, nothing restarted

        # the lost host comes back: its agent starts the old workers again...
        bed.start_host(victim)
        wait_for(
            lambda: any(victim in slots_where(bed).get(s, []) for s in lost),
            90,
            f"{victim}'s agent did not start its old workers",
        )
        # status only reads: it names the host still to be told, and changes nothing
        seen = invoke("status", *args, "--json")
        assert seen.json["run"]["fence_pending"] == [victim], seen.stdout[-2000:]
        assert seen.json["run"]["dropped"] == {}
        assert any(victim in slots_where(bed).get(s, []) for s in lost)
        told = invoke("status", *args)
        assert f"{victim} is still to be told" in told.stdout and "--converge" in told.stdout
        # ...until it hears from the controller: the latest assignment wins
        st = invoke("status", "--converge", *args, "--json")
        assert st.code == 0, st.stdout[-2000:] + st.stderr
        assert sorted(st.json["run"]["dropped"][victim]) == sorted(
            f"drfleet-robomaker-{s}" for s in lost
        )
        assert st.json["run"]["fence_pending"] == []
        assert all(len(hosts) == 1 for hosts in slots_where(bed).values())
        assert sorted(slots_where(bed)) == sorted(plan)
        again = invoke("status", "--converge", *args, "--json")
        assert again.json["run"]["dropped"] == {}  # told once
        training_goes_on()

        # cut off (not stopped): its workers keep running, unseen; their slots move to the
        # host that came back; when the network returns, the next contact drops them there
        held = sorted(s for s, hosts in slots_where(bed).items() if hosts == [other])
        bed.exec(other, CUT.format(op="I"))
        try:
            moved = invoke("train", "--rebalance", *args, "--json")
            assert moved.code == 0, moved.stdout[-2000:] + moved.stderr
            assert {int(s): m["to"] for s, m in moved.json["moved"].items()} == {
                s: victim for s in held
            }
        finally:
            bed.exec(other, CUT.format(op="D"))
        assert {s: sorted(h) for s, h in slots_where(bed).items() if s in held} == {
            s: sorted([other, victim]) for s in held
        }  # both copies run: the cut-off host has not heard from the controller yet
        st = invoke("status", "--converge", *args, "--json")
        assert st.code == 0, st.stdout[-2000:] + st.stderr
        assert sorted(st.json["run"]["dropped"][other]) == sorted(
            f"drfleet-robomaker-{s}" for s in held
        )
        where = slots_where(bed)
        assert sorted(where) == sorted(plan) and all(len(h) == 1 for h in where.values())
        assert all(where[s] == [victim] for s in held)
        training_goes_on()
    finally:
        bed.exec(other, CUT.format(op="D") + " 2>/dev/null; true")
        if victim not in up(bed):
            bed.start_host(victim)
        stop = invoke("stop", *args)
    assert stop.code == 0, stop.stderr
    assert containers(bed) == {h: [] for h in bed.hosts}
    assert not (env_dir / ".drfleet" / "run.json").exists()


def test_spot_interruption_notice_moves_the_hosts_workers_before_it_goes(
    fleet: tuple[TestBed, Path], tmp_path: Path
) -> None:
    """A spot host's agent reports EC2's interruption notice (IMDSv2, imds_standin.py);
    status shows its slots leaving, and status --converge moves them while it still answers:
    it drops them at once, no slot runs twice, training goes on."""
    bed, provisioned_with = fleet
    spot = "h3"
    env_dir = write_drfc(tmp_path / "drfc", 3, {2: "Monaco", 3: "Bowtie_track"}, 6, NONSTOP)
    inv = str(bed.inventory)
    args = ("--inventory", inv, "--env-dir", str(env_dir))
    on_spot = {spot: {"vars": {"ec2_notices": True}}}
    bed.write_inventory(host_vars=on_spot, worker_vcpus=1, trainer_vcpus=1)
    run_on = lambda cmd: bed.exec(spot, cmd)  # noqa: E731
    try:
        prov = invoke(*provision_args(bed, provisioned_with), "--limit", spot, timeout=600)
        assert prov.code == 0, prov.stdout[-2000:] + prov.stderr
        unit = bed.exec(spot, "systemctl cat drfleet-agent.service")
        assert "--ec2-notices" in unit
        imds_standin.install(run_on, {"IMDS_INSTANCE_ID": "i-0spot", "IMDS_LIFE_CYCLE": "spot"})
        run = invoke("train", *args, "--wipe", "--json")
        assert run.code == 0, run.stdout[-2000:] + run.stderr
        plan = {w["slot"]: w["host"] for w in run.json["plan"]["workers"]}
        leaving = sorted(s for s, h in plan.items() if h == spot)
        assert leaving, plan
        shares = {w["slot"]: w["episodes"] for w in run.json["plan"]["workers"]}
        goes_on(bed, shares)

        sent = imds_standin.interrupt(run_on)

        def noticed() -> bool:
            st = invoke("status", *args, "--json").json
            return bool(st["hosts"][spot]["agent"]["ec2"]["interruption"])

        wait_for(noticed, 30, f"{spot}'s agent did not report the interruption notice")
        st = invoke("status", *args, "--json")  # only reads: nothing moves yet
        assert st.json["hosts"][spot]["agent"]["ec2"]["interruption"] == sent
        assert st.json["run"]["leaving"] == {spot: {**sent, "slots": leaving, "trainer": False}}
        assert sorted(s for s, hosts in slots_where(bed).items() if spot in hosts) == leaving
        text = invoke("status", *args).stdout
        assert f"{spot}: EC2 spot interruption notice: terminate at {sent['time']}" in text
        assert f"{spot} is leaving" in text and "status --converge" in text

        moved = invoke("status", "--converge", *args, "--json")
        assert moved.code == 0, moved.stdout[-2000:] + moved.stderr
        drained = moved.json["run"]["drained"]
        assert sorted(int(s) for s in drained["moved"]) == leaving
        assert {m["from"] for m in drained["moved"].values()} == {spot}
        where = slots_where(bed)
        assert sorted(where) == sorted(plan) and all(len(h) == 1 for h in where.values())
        assert not any(spot in hosts for hosts in where.values())  # dropped at once, not fenced
        assert moved.json["run"]["fence_pending"] == [] and moved.json["run"]["leaving"] == {}
        for slot in leaving:
            to = drained["moved"][str(slot)]["to"]
            assert env_of(bed, to, f"drfleet-robomaker-{slot}")["DOCKER_REPLICA_SLOT"] == str(slot)
        goes_on(bed, shares)  # every slot its share, none twice
        again = invoke("status", "--converge", *args, "--json")
        assert "drained" not in again.json["run"]  # moved once
    finally:
        stop = invoke("stop", *args)
        imds_standin.remove(lambda cmd: bed.exec(spot, cmd, check=False))
        bed.write_inventory(worker_vcpus=1, trainer_vcpus=1)  # the agent as the others run it
        back = invoke(*provision_args(bed, provisioned_with), "--limit", spot, timeout=600)
    assert stop.code == 0, stop.stderr
    assert back.code == 0, back.stdout[-2000:] + back.stderr
    assert "--ec2-notices" not in bed.exec(spot, "systemctl cat drfleet-agent.service")
    assert containers(bed) == {h: [] for h in bed.hosts}


def _drop_host(inventory: Path, host: str) -> None:
    doc = yaml.safe_load(inventory.read_text())
    del doc["all"]["hosts"][host]
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize("moment", ["minio started", "first worker started"])
def test_controller_killed_mid_train_rerun_converges_and_stop_cleans(
    fleet: tuple[TestBed, Path], tmp_path: Path, moment: str
) -> None:
    bed, _ = fleet
    env_dir = write_drfc(tmp_path / "drfc", 4, {2: "Monaco", 3: "Monaco", 4: "Bowtie_track"}, 4)
    # a first train of a model of its own: minio keeps earlier runs' models, and a train killed
    # before its --wipe reached S3 leaves them there (the rerun would rightly refuse them)
    run_env = env_dir / "run.env"
    prefix = "killed-" + moment.replace(" ", "-")
    run_env.write_text(
        run_env.read_text().replace(
            "DR_LOCAL_S3_MODEL_PREFIX=rl-deepracer-sagemaker\n",
            f"DR_LOCAL_S3_MODEL_PREFIX={prefix}\n",
        )
    )
    assert f"DR_LOCAL_S3_MODEL_PREFIX={prefix}\n" in run_env.read_text()
    bed.write_inventory(worker_vcpus=1, trainer_vcpus=1)
    args = ("--inventory", str(bed.inventory), "--env-dir", str(env_dir))

    def reached() -> bool:
        names = [n for ns in containers(bed).values() for n in ns]
        if moment == "minio started":
            return "drfleet-minio" in names
        return any(n.startswith("drfleet-robomaker-") for n in names)

    try:
        killed(("train", *args, "--wipe"), reached)
        run: Run = invoke("train", *args, "--json")  # no --wipe: this is the same run
        assert run.code == 0, run.stdout[-2000:] + run.stderr
        ids = container_ids(bed)  # one of each, on exactly one host
        want = {f"drfleet-robomaker-{k}" for k in range(1, 5)} | {"drfleet-minio"}
        assert want | {"drfleet-rlcoach"} <= set(ids)
        algo = [n for n in ids if SAGEMAKER.match(n)]
        assert len(algo) <= 1, f"two sagemaker containers: {algo}"
        for w in run.json["plan"]["workers"]:
            assert slots_where(bed)[w["slot"]] == [w["host"]]
        assert (
            json.loads((env_dir / ".drfleet" / "run.json").read_text())["generation"]
            == (run.json["generation"])
        )
    finally:
        stop = invoke("stop", *args)
    assert stop.code == 0, stop.stderr
    assert containers(bed) == {h: [] for h in bed.hosts}
