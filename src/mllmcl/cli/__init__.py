"""The `mllmcl` command line: `main.py` holds the entry point and the one dispatch table; each command group
has a module that adds its parsers and handlers (`run.py`: run, sweep; `report.py`: report, metrics, score;
`data.py`: data check, data synth; `serve.py`: serve, library, expert; `bench.py`: bench …; `model.py`: ls,
ask, demo, pretrain). Modules here import no torch at load time, so `mllmcl --help`, `mllmcl ls` and
`mllmcl run --dry-run` start in a fraction of a second; a handler imports what its command runs."""
