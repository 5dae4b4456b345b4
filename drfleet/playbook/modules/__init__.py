"""The module registry: a task names one of these."""

from __future__ import annotations

from drfleet.playbook.modules.agent import AgentModule
from drfleet.playbook.modules.apt import Apt
from drfleet.playbook.modules.base import Arg, Module
from drfleet.playbook.modules.files import Copy, File, JsonMerge, Template
from drfleet.playbook.modules.system import (
    Assert,
    CommandModule,
    FirstBoot,
    GroupMember,
    Service,
)

MODULES: dict[str, Module] = {
    m.name: m
    for m in (
        Apt(),
        File(),
        Copy(),
        Template(),
        JsonMerge(),
        Service(),
        GroupMember(),
        CommandModule(),
        Assert(),
        AgentModule(),
        FirstBoot(),
    )
}

# Fleet-scoped modules run once over all hosts of a play; their specs live here so the
# loader validates them like any other (their code is in drfleet.playbook.fleet).
FLEET_SPECS: dict[str, dict[str, Arg]] = {
    "docker_image": {
        "images": Arg((list, str), required=True),
        "source": Arg(choices=("pull", "controller", "controller-direct", "peer")),
    },
    "swarm": {
        "network": Arg(default="sagemaker-local"),
        "subnet": Arg(),
        "labels": Arg((dict,), default={}),
        "encrypted": Arg((bool,), default=True),
    },
}

__all__ = ["FLEET_SPECS", "MODULES", "Module"]
