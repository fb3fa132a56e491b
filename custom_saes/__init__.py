"""Custom SAE architectures, each a `sae_lens.SAE` subclass in its own file, registered with sae-lens on import.

Architecture ids carry a `tsae_` prefix (sae-lens already owns names such as "temporal"). Importing this package
is what makes `SAE.load_from_disk` recognise them, so every loader in tsae_evals imports it first.
"""
