"""deepracer-for-cloud configuration: its env files, read unchanged (envfile, config), every
DR_* setting and what drfleet does with it (settings), the rules of multi-worker training
(checks), and the params files DRfC's scripts would write (params, eval_params), pure but for
reading the files. It may import the core only."""
