"""A shipped recipe, shortened, end to end on SmolLM2 (slow): cache, controls, training, one evaluation run, table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RECIPES = Path(__file__).parents[2] / "recipes"


def test_the_t_sae_recipe_runs_on_smollm2(tmp_path):
    from tsae_evals.models import load_model
    from tsae_evals.sweep import SweepRequest, run_sweep

    model = load_model()
    request = SweepRequest(
        recipe_path=RECIPES / "t_sae.yaml", out=tmp_path / "sweep", only=("matryoshka_only",), tokens=20_000
    )
    result = run_sweep(request, model_loader=lambda *_: model)
    assert {o.status for o in result.outcomes} == {"ok"}, [o.message for o in result.outcomes if o.message]
    rows = {row["variant"]: row for row in result.rows}
    assert set(rows) == {"control_topk", "matryoshka_only"}
    assert rows["matryoshka_only"]["control"] == "control_topk"
    # The contrastive weight is 0 in this variant: its share of the loss is exactly 0.
    assert rows["matryoshka_only"]["mechanism_share"] == 0
    l0 = rows["matryoshka_only"]["metrics"]["core.l0"]
    assert len(l0["values"]) == 2 and l0["effect"] is not None and l0["effect_sd"] is not None
    with result.table_csv.open() as handle:
        assert any(line["metric"] == "core.l0" for line in csv.DictReader(handle))
