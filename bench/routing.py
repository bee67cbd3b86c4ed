"""Routing benchmark script: `python bench/routing.py --run runs/dcl` (same as `mllmcl bench routing`)."""
import sys

from mllmcl.cli.main import main

sys.exit(main(["bench", "routing", *sys.argv[1:]]))
