#!/bin/sh
# /usr/local/bin/python3 on a compromised test host: the relay's `run` becomes liar.py; every
# other python3 is the real one
if [ "$1" = "-S" ] && [ "$3" = "run" ] && [ "${2##*/}" = "relay.py" ]; then
  cp "$2" "$4/relay_orig.py" && exec /usr/bin/python3 -S /opt/liar/liar.py "$4"
fi
exec /usr/bin/python3 "$@"
