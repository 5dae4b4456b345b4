from pathlib import Path

import pytest

from drfleet.errors import ConfigError
from drfleet.hosts import inventory


def load(tmp_path: Path, text: str) -> inventory.Inventory:
    p = tmp_path / "inv.yml"
    p.write_text(text)
    return inventory.load(p)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return exc.value.message


FLEET = """\
all:
  vars: {ssh_user: ubuntu, worker_vcpus: 4, trainer_vcpus: 4}
  hosts:
    trainer: {address: 10.0.0.10, roles: [trainer, robomaker], instance_type: c5.4xlarge}
    w1:      {address: 10.0.0.11, roles: [robomaker], instance_type: c5.4xlarge,
              vars: {docker_package: docker-ce}}
    gpu1:    {address: 10.0.0.12, roles: [robomaker], instance_type: g4dn.2xlarge, opengl: true}
  children:
    gpu:
      vars: {ssh_user: ec2-user, ssh_port: 2222}
      hosts:
        gpu1:
    far:
      vars: {proxy_jump: "jump@bastion:2200"}
      hosts:
        w1:
"""


def test_architecture_example_parses(tmp_path: Path) -> None:
    inv = load(tmp_path, FLEET)
    assert list(inv.hosts) == ["trainer", "w1", "gpu1"]
    t = inv.hosts["trainer"]
    assert (t.address, t.ssh_user, t.ssh_port, t.roles) == (
        "10.0.0.10",
        "ubuntu",
        22,
        ("trainer", "robomaker"),
    )
    assert t.declared("vcpus") == 16 and t.declared("memory_mb") == 32 * 1024
    assert inv.trainer is t
    gpu = inv.hosts["gpu1"]
    assert gpu.ssh_user == "ec2-user" and gpu.ssh_port == 2222  # group beats all
    assert gpu.opengl and gpu.declared("gpus") == 1
    assert inv.hosts["w1"].proxy_jump == "jump@bastion:2200"
    assert inv.hosts["w1"].vars["docker_package"] == "docker-ce"
    assert inv.hosts["w1"].vars["worker_vcpus"] == 4


def test_precedence_all_group_host(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        """\
all:
  vars: {ssh_port: 1001, color: red}
  hosts:
    a: {ssh_port: 1003}
    b:
  children:
    g:
      vars: {ssh_port: 1002, color: blue}
      hosts: {a: , b: }
""",
    )
    assert inv.hosts["a"].ssh_port == 1003
    assert inv.hosts["b"].ssh_port == 1002
    assert inv.hosts["b"].vars["color"] == "blue"
    assert inv.hosts["b"].address == "b"  # default address is the name, as in Ansible


def test_explicit_capacity_beats_instance_type(tmp_path: Path) -> None:
    inv = load(tmp_path, "all:\n  hosts:\n    a: {instance_type: c5.4xlarge, vcpus: 12}\n")
    assert inv.hosts["a"].declared("vcpus") == 12
    assert inv.hosts["a"].declared("memory_mb") == 32768


def test_instance_table_covers_required_shapes() -> None:
    from drfleet.hosts.instance_types import SHAPES

    for name in [
        "c5.2xlarge",
        "c5.4xlarge",
        "c5.9xlarge",
        "c6i.2xlarge",
        "c6i.4xlarge",
        "c7i.2xlarge",
        "c7i.4xlarge",
        "g4dn.xlarge",
        "g4dn.2xlarge",
        "g4dn.4xlarge",
        "g5.2xlarge",
    ]:
        assert name in SHAPES
    assert SHAPES["c5.4xlarge"].vcpus == 16 and SHAPES["g5.2xlarge"].gpus == 1


def test_local_connection_defaults_to_localhost(tmp_path: Path) -> None:
    inv = load(tmp_path, "all:\n  hosts:\n    me: {connection: local}\n")
    assert inv.hosts["me"].is_local and inv.hosts["me"].address == "localhost"


def test_embedded_default_is_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRFLEET_INVENTORY", raising=False)
    inv = inventory.load()
    assert list(inv.hosts) == ["localhost"]
    assert inv.hosts["localhost"].is_local
    assert inv.hosts["localhost"].roles == ("trainer", "robomaker")


def test_selection(tmp_path: Path) -> None:
    inv = load(tmp_path, FLEET)
    assert [h.name for h in inv.select()] == ["trainer", "w1", "gpu1"]
    assert [h.name for h in inv.select(["gpu1,trainer"])] == ["trainer", "gpu1"]
    assert [h.name for h in inv.select(["w1"], ["gpu"])] == ["w1", "gpu1"]
    assert [h.name for h in inv.select(groups=["trainer"])] == ["trainer"]
    assert [h.name for h in inv.select(groups=["robomaker"])] == ["trainer", "w1", "gpu1"]


def test_unknown_host_selection(tmp_path: Path) -> None:
    inv = load(tmp_path, FLEET)
    with pytest.raises(ConfigError) as exc:
        inv.select(["w2"])
    msg = exc.value.message
    assert "w2: no host or group" in msg and str(tmp_path / "inv.yml") in msg
    assert "known hosts: trainer, w1, gpu1" in msg
    with pytest.raises(ConfigError, match="no such group"):
        inv.select(groups=["gpus"])


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a: {address: 1.2.3.4\n    b: {}\n")
    assert f"{tmp_path / 'inv.yml'}:" in msg and "YAML syntax error" in msg
    assert "Traceback" not in msg


def test_port_out_of_range(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a:\n      ssh_port: 70000\n")
    assert msg.startswith(f"{tmp_path / 'inv.yml'}:4: ssh_port: 70000 is out of range")


def test_port_not_a_number(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  vars:\n    ssh_port: twenty-two\n  hosts: {a: }\n")
    assert ":3: ssh_port: must be a whole number" in msg


def test_duplicate_host_in_one_mapping(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a: {}\n    a: {}\n")
    assert ":4: duplicate key 'a' (first at line 3)" in msg


def test_duplicate_host_across_groups(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        """\
all:
  hosts:
    a: {address: 10.0.0.1}
  children:
    g:
      hosts:
        a: {address: 10.0.0.2}
""",
    )
    assert ":7: duplicate host 'a': already defined at line 3" in msg
    assert "list it as `a:` alone" in msg


def test_unknown_key_suggests(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a: {adress: 10.0.0.1}\n")
    assert ":3: unknown key 'adress' for host 'a'" in msg
    assert "did you mean 'address'?" in msg


def test_typo_in_vars_is_caught(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  vars: {ssh_prot: 22}\n  hosts: {a: }\n")
    assert "unknown key 'ssh_prot'" in msg and "'ssh_port'" in msg


def test_unknown_group_key(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  host:\n    a: {}\n")
    assert ":2: unknown key 'host' in group 'all'" in msg and "'hosts'" in msg


def test_unknown_role(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a: {roles: [trainer, robomakr]}\n")
    assert ":3: roles: unknown role 'robomakr' (did you mean 'robomaker'?)" in msg


def test_unknown_instance_type(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a: {instance_type: c5.4xlarg}\n")
    assert "did you mean 'c5.4xlarge'?" in msg and "set vcpus and memory_mb" in msg


def test_two_trainers(tmp_path: Path) -> None:
    msg = error(tmp_path, "all:\n  hosts:\n    a: {roles: [trainer]}\n    b: {roles: [trainer]}\n")
    assert "more than one host has the trainer role: a, b" in msg


@pytest.mark.parametrize(
    "name", ["a;b", "$(touch /tmp/pwned)", "-oProxyCommand=x", "a b", '"a\\n"', '"a\\n\\n"']
)
def test_hostile_host_names_refused(tmp_path: Path, name: str) -> None:
    quoted = name if name.startswith('"') else f"'{name}'"
    msg = error(tmp_path, f"all:\n  hosts:\n    {quoted}: {{}}\n")
    assert "is not valid" in msg


@pytest.mark.parametrize(
    "field,value",
    [
        ("address", "'10.0.0.1; rm -rf /'"),
        ("ssh_user", "'root$(id)'"),
        ("proxy_jump", "'-oProxyCommand=sh'"),
        ("address", "'-oProxyCommand=sh'"),
        ("publish_address", "'0.0.0.0 -p 1:1'"),
        ("publish_address", "everywhere"),
        # a pattern ending in $ took a trailing newline
        ("address", '"10.0.0.1\\n"'),
        ("ssh_user", '"fleet\\n"'),
        ("proxy_jump", '"jump@bastion\\n"'),
        ("become_password_env", '"PW\\n"'),
    ],
)
def test_hostile_settings_refused(tmp_path: Path, field: str, value: str) -> None:
    msg = error(tmp_path, f"all:\n  hosts:\n    a: {{{field}: {value}}}\n")
    assert f"{field}:" in msg


def test_not_a_mapping(tmp_path: Path) -> None:
    assert "one key, `all`" in error(tmp_path, "- a\n- b\n")
    assert "unexpected top-level key 'hosts'" in error(tmp_path, "hosts: {}\n")
    assert "no hosts" in error(tmp_path, "all:\n  vars: {}\n")


def test_missing_file_and_binary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        inventory.load(tmp_path / "nope.yml")
    p = tmp_path / "bin.yml"
    p.write_bytes(b"all:\n\x00\xff")
    with pytest.raises(ConfigError, match=r"bin.yml:2"):
        inventory.load(p)


@pytest.mark.parametrize(
    "text",
    [
        "all:\n  vars:\n    become_password: hunter2\n  hosts:\n    a: {}\n",
        "all:\n  hosts:\n    a:\n      become_password: hunter2\n",
        "all:\n  hosts:\n    a:\n      vars: {ansible_become_pass: hunter2}\n",
    ],
)
def test_passwords_in_the_inventory_are_refused_without_echoing_them(
    tmp_path: Path, text: str
) -> None:
    msg = error(tmp_path, text)
    assert "passwords do not belong in an inventory file" in msg
    assert "DRFLEET_BECOME_PASSWORD" in msg and "hunter2" not in msg


def test_become_password_env_names_a_variable(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yml"
    ok.write_text("all:\n  vars: {become_password_env: LAB_SUDO}\n  hosts:\n    a: {}\n")
    assert inventory.load(ok).hosts["a"].become_password_env == "LAB_SUDO"
    assert "environment variable name" in error(
        tmp_path, "all:\n  vars: {become_password_env: 'x y'}\n  hosts:\n    a: {}\n"
    )


def test_limit_takes_names_groups_patterns_and_exclusions(tmp_path: Path) -> None:
    inv = load(tmp_path, FLEET)

    def names(*words: str) -> list[str]:
        return [h.name for h in inv.select(words)]

    assert names() == ["trainer", "w1", "gpu1"]
    assert names("w1,gpu1") == ["w1", "gpu1"] and names("w1", "gpu1") == ["w1", "gpu1"]
    assert names("gpu") == ["gpu1"] and names("robomaker", "!gpu") == ["trainer", "w1"]
    assert names("*1") == ["w1", "gpu1"] and names("!trainer") == ["w1", "gpu1"]
    with pytest.raises(ConfigError, match="w9: no host or group of the inventory"):
        inv.select(["w9"])


ANSIBLE_YAML = """\
all:
  vars: {ansible_user: ubuntu, ansible_ssh_private_key_file: ~/.ssh/fleet, ansible_become: yes}
  children:
    trainer:
      hosts:
        t1:
          ansible_host: 10.0.0.10
          ansible_port: 2222
          ansible_python_interpreter: /usr/bin/python3
    robomaker:
      hosts:
        t1:
        w1:
          ansible_host: 10.0.0.11
          ansible_ssh_common_args: "-o ProxyJump=jump@bastion:2200"
"""

ANSIBLE_INI = """\
# an Ansible inventory, as Ansible users write them
t1 ansible_host=10.0.0.10 ansible_port=2222 roles=trainer,robomaker note="a b"

[robomaker]
w1 ansible_host=10.0.0.11 ansible_ssh_common_args='-J jump@bastion:2200'
w2 ansible_host=10.0.0.12 ansible_connection=ssh

[gpu:children]
robomaker

[all:vars]
ansible_user=ubuntu
ansible_ssh_private_key_file=~/.ssh/fleet
ansible_become=true
"""


def test_an_ansible_inventory_loads_as_yaml_and_ini(tmp_path: Path) -> None:
    """Ansible's connection variables mean drfleet's settings; a host in a group named after a
    role has the role; Ansible's other variables stay as vars."""
    inv = load(tmp_path, ANSIBLE_YAML)
    t1, w1 = inv.hosts["t1"], inv.hosts["w1"]
    assert (t1.address, t1.ssh_port, t1.ssh_user, t1.ssh_key, t1.become) == (
        "10.0.0.10",
        2222,
        "ubuntu",
        "~/.ssh/fleet",
        True,
    )
    assert t1.roles == ("trainer", "robomaker") and w1.roles == ("robomaker",)
    assert w1.proxy_jump == "jump@bastion:2200"
    assert t1.vars["ansible_python_interpreter"] == "/usr/bin/python3"
    ini = tmp_path / "hosts.ini"
    ini.write_text(ANSIBLE_INI)
    inv = inventory.load(ini)
    t1, w1, w2 = (inv.hosts[n] for n in ("t1", "w1", "w2"))
    assert (t1.address, t1.ssh_port, t1.roles, t1.vars["note"]) == (
        "10.0.0.10",
        2222,
        ("trainer", "robomaker"),
        "a b",
    )
    assert w1.proxy_jump == "jump@bastion:2200" and w2.connection == "ssh"
    assert (w2.ssh_user, w2.ssh_key, w2.become, w2.roles) == (
        "ubuntu",
        "~/.ssh/fleet",
        True,
        ("robomaker",),
    )
    assert set(inv.groups["gpu"]) == {"w1", "w2"}


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "all:\n  hosts:\n    a: {address: x, ansible_host: y}\n",
            "ansible_host and address (line 3) both set address",
        ),
        (
            "all:\n  vars: {ansible_user: u, ssh_user: v}\n  hosts: {a: {}}\n",
            "ansible_user and ssh_user",
        ),
        (
            "all:\n  hosts:\n    a: {ansible_ssh_common_args: '-o StrictHostKeyChecking=no'}\n",
            "takes only a ProxyJump here",
        ),
        ("all:\n  hosts:\n    a: {ansible_password: hunter2}\n", "passwords do not belong"),
        (
            "all:\n  hosts:\n    a: {ansible_connection: winrm}\n",
            "'winrm' is not something drfleet can use",
        ),
    ],
)
def test_ansible_names_that_clash_or_do_harm_are_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    msg = error(tmp_path, text)
    assert expected in msg and "hunter2" not in msg


def test_an_ansible_variable_a_letter_off_is_a_typo_not_a_var(tmp_path: Path) -> None:
    ini = tmp_path / "hosts.ini"
    ini.write_text("h1 ansible_host=10.0.0.1\n[fleet]\nh2 ansible_hots=10.0.0.2\n")
    with pytest.raises(ConfigError) as exc:
        inventory.load(ini)
    assert f"{ini}:3: unknown Ansible variable 'ansible_hots'" in exc.value.message
    assert "did you mean 'ansible_host'?" in exc.value.message
    ini.write_text("h1 ansible_host=10.0.0.1 ansible_python_interpreter=/usr/bin/python3\n")
    assert inventory.load(ini).hosts["h1"].vars["ansible_python_interpreter"] == "/usr/bin/python3"
