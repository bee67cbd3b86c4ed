"""The engine: one training loop on accelerate + peft (`train.py`), batched generation with one adapter per
sample (`generate.py`, `mixed.py`), named adapters and their I/O (`adapters.py`, `moe.py`, `blocks.py`,
`teacher.py`), and its settings as plain data (`settings.py`, torch-free)."""
