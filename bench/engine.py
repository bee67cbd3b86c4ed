"""Engine benchmark script: `python bench/engine.py` (same as `mllmcl bench engine`)."""
import sys

from mllmcl.cli.main import main

sys.exit(main(["bench", "engine", *sys.argv[1:]]))
