"""The training loop shared by the `tsae_` architectures whose recipes need phases, curricula or whole sequences.

Architectures that fit sae-lens's trainer (ReLU, TopK, BatchTopK) train through it instead
(tsae_evals.training.sae_lens_recipes); every recipe registers in custom_saes.training.registry.
"""
