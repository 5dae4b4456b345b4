"""Runs that share a fleet (DR_RUN_ID keeps them apart, as in DRfC's multi_run.md): what
one may not do to another (conflicts), the room another leaves (room), and where the one
minio they share runs (minio_where). Pure: over the hosts' statuses and the desired states
about to be sent."""

from __future__ import annotations

import dataclasses
from typing import Any

from drfleet_agent.contract import HostStatus

from drfleet.errors import DrfleetError
from drfleet.names import RUN_ENV_LABEL, RUN_LABEL, RUN_PREFIX_LABEL, Run
from drfleet.runs.placement import Capacity, Plan
from drfleet.runs.runstate import RunState


def owner(docs: dict[str, dict[str, Any]]) -> str:
    """The identity the run's containers carry (specs.owned), "" when they carry none."""
    for doc in docs.values():
        for c in doc["containers"]:
            return str((c.get("labels") or {}).get(RUN_LABEL, ""))
    return ""


TRAINING_ROLES = ("rl_coach", "robomaker")


def other_runs(held: dict[str, HostStatus], stack: str, ours: str) -> dict[str, dict[str, str]]:
    """host -> the labels of another env dir's training in this stack (the same DR_RUN_ID),
    whose place a train from here would take (pure). Containers of an older drfleet carry
    no label and do not count."""
    out: dict[str, dict[str, str]] = {}
    for host, st in held.items():
        for c in st.stack(stack):
            theirs = c.labels.get(RUN_LABEL, "")
            if theirs and ours and theirs != ours and c.role in TRAINING_ROLES:
                out[host] = c.labels
                break
    return out


def own_other_run(held: dict[str, HostStatus], stack: str, ours: str) -> tuple[str, list[str]]:
    """The stack of another training of this env dir itself that still runs (its DR_RUN_ID
    changed since), and the hosts it runs on; ("", []) when there is none (pure)."""
    found: dict[str, set[str]] = {}
    for host, st in held.items():
        for c in st.containers:
            if (
                ours
                and c.labels.get(RUN_LABEL) == ours
                and c.stack != stack
                and c.role in TRAINING_ROLES
            ):
                found.setdefault(c.stack, set()).add(host)
    if not found:
        return "", []
    other = min(found)
    return other, sorted(found[other])


def conflicts(
    held: dict[str, HostStatus], docs: dict[str, dict[str, Any]], replace: bool = False
) -> None:
    """No host may hold a newer assignment of the same stack and run than the one about to
    be sent: that comes from another controller (or another env dir), and the newer one
    wins. Nor may the stack run another env dir's training (the same DR_RUN_ID), unless
    asked to replace it; nor may this env dir's training still run under another DR_RUN_ID.
    Checked on every host before any is told, so a refusal changes nothing anywhere (each
    agent refuses the first too). Pure."""
    first = docs[next(iter(docs))]
    stack, run_id, ours = first["stack"], first["run_id"], owner(docs)
    newer = []
    for host, st in held.items():
        if host not in docs:
            continue
        have = st.agent.stacks.get(stack)
        if have and have["run_id"] == run_id and have["generation"] > docs[host]["generation"]:
            newer.append(f"{host} holds generation {have['generation']}")
    others = {} if replace else other_runs(held, stack, ours)
    if others:
        labels = next(iter(others.values()))
        raise DrfleetError(
            f"{', '.join(sorted(others))} run the training of "
            f"{labels.get(RUN_ENV_LABEL, 'another env dir')} (model prefix "
            f"{labels.get(RUN_PREFIX_LABEL, '?')}) as run {run_id} (DR_RUN_ID); this train "
            "would take its place. Nothing was changed",
            fix="to train beside it, give this env dir another DR_RUN_ID in run.env (1, 2 ...); "
            "or end that run first (`drfleet stop` from its env dir), or train with --replace "
            "to take its place",
        )
    trains = any(c["role"] in TRAINING_ROLES for d in docs.values() for c in d["containers"])
    gone, where = own_other_run(held, stack, ours) if trains else ("", [])
    if gone:
        raise DrfleetError(
            f"this env dir's training still runs as stack {gone} on {', '.join(where)}, and "
            f"this train would start {stack} beside it (DR_RUN_ID changed). Nothing was changed",
            fix="`drfleet stop` first (it ends the run this env dir started), then train again",
        )
    if newer:
        raise DrfleetError(
            f"{'; '.join(newer)} of stack {stack}, newer than this controller's; another "
            "controller (or another env dir) drives these hosts. Nothing was changed",
            fix="train from there, or `drfleet stop` (from anywhere) to end that run first",
        )


def room(
    caps: dict[str, Capacity], held: dict[str, HostStatus], stack: str
) -> tuple[dict[str, Capacity], list[str]]:
    """The capacities left beside what other stacks run on each host (another run's trainer
    and workers, any evaluation), and a note per host that shares (pure): two runs never
    oversubscribe a host between them."""
    out, notes = dict(caps), []
    for host, cap in caps.items():
        st = held.get(host)
        if st is None:
            continue
        used, what = 0, []
        for c in st.containers:
            if c.stack == stack or c.role not in (*TRAINING_ROLES, "evaluation"):
                continue
            used += cap.trainer_vcpus if c.role == "rl_coach" else cap.worker_vcpus
            what.append(c.name)
        if used:
            out[host] = dataclasses.replace(cap, vcpus=max(0, cap.vcpus - used))
            notes.append(
                f"{host}: {used} of its {cap.vcpus} vCPUs go to other runs ({', '.join(what)})"
            )
    return out, notes


def minio_where(held: dict[str, HostStatus], trainer: str) -> None:
    """The fleet's minio, shared by every run (DRfC runs one), is on this run's trainer or
    nowhere yet: a second minio elsewhere would answer to the same name `minio` on the
    overlay (pure)."""
    for host, st in held.items():
        if host != trainer and any(c.role == "minio" for c in st.containers):
            raise DrfleetError(
                f"the fleet's minio runs on {host}, and this run's trainer is {trainer}: every "
                "run on a fleet shares one minio, on the host that trains. Nothing was changed",
                fix=f"give {host} the trainer role in the inventory (and {trainer} only "
                "robomaker), or stop the runs that use it first",
            )


def live_plan(
    state: RunState | None, run: Run, held: dict[str, HostStatus], workers: int
) -> Plan | None:
    """The plan of this run as it runs now, when a train would only resume it: the record
    names this run with as many workers, and its trainer still runs it. Kept as it is, so
    what started beside it since (another run, an evaluation) never moves its workers."""
    if state is None or state.run_id != run.id or len(state.plan.workers) != workers:
        return None
    trainer = held.get(state.plan.trainer)
    if trainer is None or trainer.get(run.rlcoach) is None:
        return None
    return state.plan


def running_keys(held: dict[str, Any] | None) -> dict[str, str] | None:
    """The keys the fleet's minio runs with (held: the s3 stack's desired state), or None."""
    if held is None or not held.get("containers"):
        return None
    env = held["containers"][0].get("env") or {}
    keys = {
        "access_key": str(env.get("MINIO_ROOT_USER", "")),
        "secret_key": str(env.get("MINIO_ROOT_PASSWORD", "")),
    }
    return keys if all(keys.values()) else None
