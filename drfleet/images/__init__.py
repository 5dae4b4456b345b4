"""Images: one copy of an image into the fleet, relayed host to host over SSH (image_relay),
what the controller takes from a relaying host (relay_trust), the layer arithmetic and the
archive cut (image_layers, pure), and this machine's docker (localdocker). It may import the
core and hosts, and the playbook runner's HostState as a type (playbook.hoststate)."""
