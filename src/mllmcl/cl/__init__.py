"""Continual learning: the run's configuration (`config.py`, torch-free), what methods and routers are built
with (`context.py`), the methods (`methods/`) and the routers shared by the expert methods and serving
(`routing/`). Each of the two keeps a torch-free catalog of what exists (`catalog.py`) apart from its code."""
