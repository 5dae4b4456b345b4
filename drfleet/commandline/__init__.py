"""The command line: the `drfleet` program (program), its invoke tasks (cli, cli_models,
cli_eval), how they take flags and report errors (command), and the live status view
(status_view). It owns arguments, `--json` documents and text; the work is the other parts'.
It may import every part of drfleet; no part imports it."""
