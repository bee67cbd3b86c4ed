"""Running the continual-learning protocol: the tasks of a run (`benchmark.py`), evaluating a method on them
(`evaluation.py`), one method's steps (`steps.py`), the run folder and its resume (`folder.py`), the log lines
(`log.py`), the protocol itself (`protocol.py`), its independent parts in parallel processes (`jobs.py`), and
the same run over task orders and seeds (`sweep.py`). The results file it writes is `eval/results.py`."""
