"""The engine: one training loop (accelerate + peft), batched per-sample-adapter inference, adapter I/O."""
from mllmcl.engine.adapters import BASE, LoraRecipe, add_adapter, delete_adapter, load_adapter, save_adapter
from mllmcl.data.records import Example, load_image
from mllmcl.engine.generate import Generation, generate, generate_detailed, next_token_logits, pooled_features
from mllmcl.engine.train import TrainConfig, TrainStats, causal_lm_loss, train

__all__ = ["BASE", "Example", "Generation", "generate_detailed", "LoraRecipe", "TrainConfig", "TrainStats", "add_adapter", "causal_lm_loss",
           "delete_adapter", "generate", "load_adapter", "load_image", "next_token_logits", "pooled_features", "save_adapter", "train"]
