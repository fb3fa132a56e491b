"""Custom SAE architectures, each a `sae_lens.SAE` subclass in its own file, registered with sae-lens on import.

Architecture ids carry a `tsae_` prefix (sae-lens already owns names such as "temporal"). Importing this package
is what makes `SAE.load_from_disk` recognise them, so every loader in tsae_evals imports it first.
"""

from custom_saes import (  # noqa: F401  (each module registers its architecture on import)
    adaptive_variance,
    baselines,
    controls,
    hierarchical,
    t_sae,
    temporal_consistency,
    temporal_context,
    temporal_lstm,
)
