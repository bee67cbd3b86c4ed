"""Backbones: the embedded `tiny` LLaVA and checkpoints on disk (`hf:<path>`) of the families mllmcl knows.

- `catalog.py`: the kinds of backbone and the check of a name (no torch: the configuration reads it);
- `families.py`: each model family's layout (projector, vision layers) and chat format (no torch either);
- `load.py`: `load_backbone(name)`;
- `backbone.py`: `Backbone`, a model with its processor, chat template and the encodings the engine uses;
- `hf.py`, `tiny.py`, `template.py`: loading a checkpoint, building the tiny model, the chat templates;
- `random_checkpoint.py`: a random-weight checkpoint of any family at any shape (tests, `bench scale`).
"""
