#!/bin/bash
# The stand-in's /opt/ml/code/run.sh: `run.sh multi|run distributed_training.launch.py`
exec python3 /opt/ml/code/standin.py robomaker "$@"
