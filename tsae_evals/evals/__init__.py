"""Built-in evals, one folder each with `config.py`, `result.py` and `eval.py`."""
