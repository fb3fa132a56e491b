"""Thin adapters that hand SAE-Bench's own eval functions our model object and data; its quirks stay here."""
