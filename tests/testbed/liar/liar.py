"""A compromised host in the image relay chain, for drfleet's test bed (python3 -S, run in
place of the relay the controller sent: see python3.sh). It loads what it is sent as an
honest host would, then, as /opt/liar/mode says:
- lie: tells the controller, in the chain's own JSON lines, that every host after it loaded
  the right image, and passes nothing on;
- crafted: feeds the next host, over the transfer's own hop (the real relay's hop_command), an
  archive of its own that tags the image being sent and two more, and lies the same way.
"""

import json
import os
import shutil
import subprocess
import sys

d = sys.argv[1]
sys.path.insert(0, d)
import relay_orig as real  # noqa: E402  (the relay.py the controller sent, kept aside)

real.rewrite_keys(lambda line: line.rstrip().endswith(real.MARK + d))
with open(os.path.join(d, "conf.json")) as fh:
    conf = json.load(fh)
with open("/opt/liar/mode") as fh:
    mode = fh.read().strip()
data = sys.stdin.buffer.read()
sudo = ["sudo", "-n", "--"] if conf.get("sudo") else []
subprocess.run([*sudo, "docker", "load", "-q"], input=data, stdout=subprocess.DEVNULL, check=True)
nxt = conf.get("next")
if mode == "crafted" and nxt:
    with open("/opt/liar/evil.tar", "rb") as fh:
        subprocess.run(
            real.hop_command(d, nxt), stdin=fh, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
for host in ("h2", "h3", conf["host"]):
    line = {"host": host, "bytes": len(data), "done": True, "id": conf["id"], "error": None}
    print(json.dumps(line), flush=True)
shutil.rmtree(d, ignore_errors=True)
