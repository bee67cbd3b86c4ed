"""Serving: MR-LoRA's experts and router as a deployable model, without a benchmark.

- `routed.py`: `RoutedModel` — load from an expert library or a finished run; `route`, `answer`;
- `library.py`: the expert library on disk (manifest, immutable versions, current-version pointer, audit log);
- `grow.py`: export a run, add an expert through the gate, remove one, roll back;
- `gate.py`: measure a candidate version on the held-out rows, and the regression gate;
- `openworld.py`: the fallback threshold's calibration, AUROC;
- `images.py`, `batcher.py`, `app.py`: the OpenAI-compatible HTTP server (FastAPI + uvicorn);
- `settings.py`: the settings of serving and of library changes, with their defaults (torch-free).
The benchmarks of serving are `mllmcl.bench.serve` and `mllmcl.bench.openworld`."""
