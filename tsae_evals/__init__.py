"""Evaluation suite for sparse autoencoders on language-model activations."""

from tsae_evals._compat import datasets_without_torchvision

__version__ = "0.1.0"

datasets_without_torchvision()
