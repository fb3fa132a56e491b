"""Settings of the coreference probe."""

from __future__ import annotations

from pydantic import Field

from tsae_evals.probing.config import ProbeSettings, ProbeSize


class CoreferenceConfig(ProbeSettings):
    """Antecedent probes at the pronoun and the 1-3 tokens after it, on unambiguous (gender decides) and ambiguous
    (the predicate decides) items; the pronoun binding score against its nulls."""

    n_pairs: int = Field(default=96, ge=2)
    """Minimal pairs (one item of each label) per template, half train and half test (ignored with `items_file`);
    a multiple of 4 balances the pronoun's gender exactly in both splits."""
    readout_k: ProbeSize = 5
    """The probe size (one of 1, 2, 5, 10, 20) the ambiguity contrast compares."""
    gate_ambiguous: bool = False
    """Also keep only the ambiguous items the model gets right. Off by default: their label comes from world
    knowledge in the predicate, which SmolLM2-135M does not use (its pair gate there is about chance), and they
    serve as the control in which nothing up to the pronoun tells the antecedent. Their gate is reported either
    way."""
