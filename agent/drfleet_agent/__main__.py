import sys

from drfleet_agent.cli import main

sys.exit(main())
