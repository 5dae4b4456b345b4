"""Hosts and the wire: the inventory (inventory, ansible_inventory, instance_types), SSH and
local sessions and their fan-out (remote), host keys (hostkeys), port forwards (tunnel),
the fact probe that runs alone on a host (probe), its typed reading (hostfacts, facts), and
the agent as a bundle (agent_bundle) and as the controller's client of it (agent_client). It
may import the core and drfleet_agent's contract and spec; nothing else of drfleet."""
