"""Settings of the homonym disambiguation probe."""

from __future__ import annotations

from pydantic import Field, field_validator

from tsae_evals.probing.config import ProbeSettings
from tsae_evals.probing.probes import K_VALUES


class DisambiguationConfig(ProbeSettings):
    """Sense probes at the homonym (cue before vs after it) and at the gate position, the token-embedding control,
    and the latency after the cue at which the sense becomes decodable."""

    max_items: int = Field(default=1440, ge=4)
    """Generated items kept, spread evenly over (homonym, split, template) with both senses equally (the full
    table has about 5,700; ignored with `items_file`). Each costs one full model forward of about 18 tokens."""
    latency_k: int = 5
    """The probe size (one of 1, 2, 5, 10, 20) of the latency readout."""
    latency_threshold: float = Field(default=0.6, gt=0.5, lt=1)
    """The sense counts as decodable at a position once the lower end of the bootstrap interval of the test
    accuracy of the probe fitted and scored there reaches this."""
    latency_max_offset: int = Field(default=16, ge=1)
    """Positions read, up to this many tokens after the cue (cue-after items also from the homonym up to it)."""
    latency_min_items: int = Field(default=20, ge=2)
    """An offset with fewer test items than this is reported but never counts as the latency."""

    @field_validator("latency_k")
    @classmethod
    def _latency_k(cls, value: int) -> int:
        if value not in K_VALUES:
            raise ValueError(f"latency_k must be one of {list(K_VALUES)}")
        return value
