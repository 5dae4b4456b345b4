#!/bin/bash
# deepracer-analysis docker/entrypoint.sh (6f8cf6b): ubuntu's UID and GID from NB_UID and NB_GID
# (default 1000), /workspace and the home chowned only when the UID changed, then the command
# as ubuntu. Debian's util-linux setpriv stands in for gosu, which the stand-ins' root lacks;
# gosu also sets HOME to the user's, so this does too.
set -e

NB_UID=${NB_UID:-1000}
NB_GID=${NB_GID:-1000}

CURRENT_UID=$(id -u ubuntu)
CURRENT_GID=$(id -g ubuntu)

if [ "${NB_GID}" != "${CURRENT_GID}" ]; then
    groupmod -g "${NB_GID}" ubuntu
fi

if [ "${NB_UID}" != "${CURRENT_UID}" ]; then
    usermod -u "${NB_UID}" ubuntu
    chown -R ubuntu:ubuntu /workspace /home/ubuntu
fi

export HOME=/home/ubuntu USER=ubuntu
exec setpriv --reuid ubuntu --regid ubuntu --init-groups "$@"
