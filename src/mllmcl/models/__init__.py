"""Backbones: the embedded `tiny` LLaVA and any LLaVA-family checkpoint on disk (`hf:<path>`).

- `catalog.py`: the kinds of backbone and the check of a name (no torch: the configuration reads it);
- `load.py`: `load_backbone(name)`;
- `backbone.py`: `Backbone`, a model with its processor, chat template and the encodings the engine uses;
- `hf.py`, `tiny.py`, `template.py`: loading a checkpoint, building the tiny model, the chat template.
"""
