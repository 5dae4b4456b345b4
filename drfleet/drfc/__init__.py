"""deepracer-for-cloud configuration: its env files, read unchanged."""
