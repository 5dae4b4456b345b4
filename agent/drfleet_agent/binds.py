"""Which bind sources the agent may mount: read from the file system as the kernel would
resolve them, before a container is created and again before every start."""

from __future__ import annotations

import contextlib
import os
import stat

from drfleet_agent.spec import Mount


def unsafe_sources(mounts: list[Mount], owners: set[int]) -> str:
    """Why a bind source may not be mounted, or "" (unsafe_path, for each)."""
    groups = _root_groups()
    for m in mounts:
        why = unsafe_path(m.source, owners, groups)
        if why:
            return why
    return ""


def _root_groups() -> set[int]:
    """Groups whose members are root already: root's, and the docker socket's."""
    groups = {0}
    with contextlib.suppress(OSError):
        groups.add(os.stat("/var/run/docker.sock").st_gid)
    return groups


def unsafe_path(path: str, owners: set[int], groups: set[int]) -> str:
    """Why path may not be a bind source, or "". It is walked as the kernel resolves it, one
    component at a time and never following a link unchecked: each component, from `/`, must
    belong to root (or the agent's own user), and none may be writable by anyone else (a
    group's write only for a group of root's; everyone's only on a sticky directory such as
    /tmp, where nobody may replace another's entry). A link is followed only when it is
    root's too, and what it names is walked the same way. What cannot be checked is refused.
    A path another local user made first (/tmp/sagemaker, say), or could change, would let
    them feed files to containers that run as root with the docker socket."""
    todo = [p for p in path.split("/") if p][::-1]
    cur, links = "/", 0
    why = _component("/", owners, groups)
    while todo and not why:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            cur = os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, name)
        why = _component(nxt, owners, groups)
        if why or not os.path.islink(nxt):
            cur = nxt
            continue
        links += 1
        if links > 40:
            return f"{path}: too many symbolic links"
        try:
            target = os.readlink(nxt)
        except OSError as exc:
            return f"cannot check {nxt}: {exc.strerror}"
        if target.startswith("/"):
            cur = "/"
        todo.extend(p for p in reversed(target.split("/")) if p)
    return f"{path} cannot be mounted: {why}" if why else ""


def existing(path: str) -> str:
    """The longest part of path that exists (at least /)."""
    while path not in ("/", "") and not os.path.lexists(path):
        path = os.path.dirname(path)
    return path or "/"


def _component(p: str, owners: set[int], groups: set[int]) -> str:
    try:
        st = os.lstat(p)
    except OSError as exc:
        return f"cannot check {p}: {exc.strerror}"
    if st.st_uid not in owners:
        return (
            f"{p} belongs to uid {st.st_uid}, not root: another user could control what the "
            "container reads there; remove it (it is created again, root's) or chown it to root"
        )
    if stat.S_ISLNK(st.st_mode):
        return ""
    others = st.st_mode & stat.S_IWOTH
    group = st.st_mode & stat.S_IWGRP and st.st_gid not in groups
    sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if (others and not sticky) or group:
        return (
            f"{p} may be written by others (mode {stat.filemode(st.st_mode)}): they could "
            f"replace what the container reads; chmod go-w {p}"
        )
    return ""
