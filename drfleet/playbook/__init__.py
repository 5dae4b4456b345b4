"""The playbook engine: ordered, idempotent tasks in YAML (loader, model, templating,
shellvalues), run on hosts over SSH (runner, with what it keeps per host in hoststate);
per-host modules plan pure steps from facts (modules), fleet tasks see every host at once
(fleet). It may import the core, hosts and images."""
