import runpy
import sys

sys.argv = ["standin.py", "rl_coach"]
runpy.run_path("/opt/ml/code/standin.py", run_name="__main__")
