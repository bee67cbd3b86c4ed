"""mllmcl: continual learning of multimodal large language models (MLLM-CL benchmark, MR-LoRA, baselines)."""

__version__ = "0.1.0"
