"""Golden results of the tiny model: `python -m tests.golden.regenerate` writes them, tests/unit/test_golden.py
checks a fresh run against them."""
