"""The playbook engine: ordered, idempotent tasks in YAML, run on hosts over SSH."""
