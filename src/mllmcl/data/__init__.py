"""Data records and loaders."""
from mllmcl.data.mllm_cl import Benchmark, Problem, Sample, Task, load_benchmark
from mllmcl.data.records import Example, ImageLike, VQAExample, load_image
from mllmcl.data.tasks import BUILTIN, ExtraFile, TaskSpec, write_manifest

__all__ = ["BUILTIN", "Benchmark", "Example", "ExtraFile", "ImageLike", "Problem", "Sample", "Task", "TaskSpec",
           "VQAExample", "load_benchmark", "load_image", "write_manifest"]
