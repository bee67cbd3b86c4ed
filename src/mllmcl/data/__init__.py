"""Data records and loaders."""
from mllmcl.data.records import Example, ImageLike, VQAExample, load_image

__all__ = ["Example", "ImageLike", "VQAExample", "load_image"]
