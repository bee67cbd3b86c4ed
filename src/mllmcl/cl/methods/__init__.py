"""Continual-learning methods, one module each (registry key = module name in snake case: `seq-lora` →
`seq_lora.py`). `catalog.py` says what each is (torch-free: the configuration and `mllmcl ls` read it),
`base.py` holds the contract, `build.py` builds a method from its entry in the configuration."""
