"""Run lengths live in custom_saes (its lifecycle tracker counts them too); this eval reads them from there."""

from custom_saes.runs import RunLengths, run_lengths

__all__ = ["RunLengths", "run_lengths"]
