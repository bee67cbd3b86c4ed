"""Runnable tours that print measured figures (timings are never asserted in tests: too noisy): one module per
`mllmcl bench …` command (`engine`, `methods`, `routers`, `routing`, `scale`, `serve`, `openworld`) and
`mllmcl demo` (`demo.py`)."""
