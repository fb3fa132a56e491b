"""Shared pieces of the linguistic probe evals (agreement, coreference, disambiguation): items, tokenization
checks, one model forward per item set, and SAE-Bench's probe recipe with its baselines."""
