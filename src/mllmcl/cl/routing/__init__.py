"""Routers: given a query (image + prompt, no label), pick one of the experts learned so far. Shared by every
expert method and by serving. `catalog.py` lists them (torch-free), `router.py` holds the contract,
`build.py` builds one by name, `answer.py` routes and answers; one module per router: `mllm` (the paper's
router LoRA), `prototype` (frozen features, training-free), `oracle` (the true task; evaluation only)."""
