"""sweep: recipes validated before any work, grids expanded, SAEs reused while their settings are unchanged, and
a table whose effects are the paired differences of the result files."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from tests import helpers
from tsae_evals.cli.main import main
from tsae_evals.errors import UsageError
from tsae_evals.results import read_record
from tsae_evals.sweep import SweepRequest, load_recipe, run_sweep
from tsae_evals.sweep.recipe import expand


@pytest.fixture
def corpus(tmp_path) -> Path:
    return helpers.write_corpus(tmp_path / "corpus.txt", n_documents=80)


def test_grids_expand_into_named_variants_with_the_control_resolved(tmp_path, corpus):
    variants = expand(load_recipe(helpers.sweep_recipe(tmp_path, corpus)))
    assert [v.name for v in variants] == ["control", "consistency[window_size=2]", "consistency[window_size=3]"]
    assert variants[1].options == {"window_size": 2} and variants[1].train["tokens"] == 600
    assert {v.control for v in variants} == {"control"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"control": "nope"}, "control 'nope' is not a variant"),
        ({"variants": [{"name": "control", "arch": "relux"}]}, "unknown architecture 'relux'"),
        ({"variants": [{"name": "control", "arch": "control_relu", "train": {"epochs": 2}}]}, "unknown training"),
        ({"variants": [{"name": "control", "arch": "control_topk", "set": {"k": -1}}]}, "--set for control_topk"),
        ({"variants": [{"name": "control", "arch": "control_relu"}] * 2}, "unique"),
        ({"train": {}}, "no token budget"),
        ({"seeds": [0, 0]}, "seeds repeat"),
        (
            {"variants": [{"name": "control", "arch": "tsae_temporal_lstm", "set": {"init_from": "@later"}}]},
            "names no earlier variant",
        ),
    ],
)
def test_bad_recipes_are_refused_with_one_line(tmp_path, corpus, overrides, message):
    with pytest.raises(UsageError, match=message):
        load_recipe(helpers.sweep_recipe(tmp_path, corpus, **overrides))


def test_a_recipe_publishing_into_a_file_without_its_markers_is_refused(tmp_path, corpus):
    (tmp_path / "notes.md").write_text("no markers here\n")
    with pytest.raises(UsageError, match="no <!-- sweep:tiny --> ... <!-- /sweep:tiny --> block"):
        load_recipe(helpers.sweep_recipe(tmp_path, corpus, publish="notes.md"))
    with pytest.raises(UsageError, match="does not exist"):
        load_recipe(helpers.sweep_recipe(tmp_path, corpus, publish="missing.md"))


def test_the_cli_exits_2_on_a_bad_recipe_before_loading_a_model(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["sweep", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_sweep_trains_once_evaluates_and_tables_paired_effects(tiny_model, tmp_path, corpus, monkeypatch):
    import tsae_evals.training as training

    trained: list[str] = []
    real_train = training.train
    monkeypatch.setattr(
        training, "train", lambda request, **kw: trained.append(request.out.name) or real_train(request, **kw)
    )
    notes = tmp_path / "notes.md"
    notes.write_text("before\n<!-- sweep:tiny -->\nold table\n<!-- /sweep:tiny -->\nafter\n")
    request = SweepRequest(
        recipe_path=helpers.sweep_recipe(tmp_path, corpus, publish="notes.md"), out=tmp_path / "sweep"
    )
    result = run_sweep(request, model_loader=lambda *_: tiny_model)
    assert len(trained) == 6 and all(o.status == "ok" for o in result.outcomes)
    published = notes.read_text()
    assert published.startswith("before\n<!-- sweep:tiny -->\n") and published.endswith("<!-- /sweep:tiny -->\nafter\n")
    assert "old table" not in published and "| control | control_relu | (control) |" in published

    def jaccard(variant: str, seed: int) -> float:
        path = tmp_path / "sweep" / "eval_results" / "temporal_stability"
        record = read_record(path / f"local_{variant}-s{seed}_eval_results.json")
        return float(record.metrics()["jaccard.adjacent_jaccard"])

    row = next(r for r in result.rows if r["variant"] == "consistency[window_size=3]")
    metric = row["metrics"]["temporal_stability.jaccard"]
    differences = [jaccard("consistency[window_size=3]", s) - jaccard("control", s) for s in (0, 1)]
    assert metric["effect"] == pytest.approx(statistics.fmean(differences))
    assert metric["effect_sd"] == pytest.approx(statistics.stdev(differences))
    assert metric["values"] == pytest.approx([jaccard("consistency[window_size=3]", s) for s in (0, 1)])
    assert row["mechanism_share"] is not None  # the consistency term's share of the loss, from the training log
    table = result.table_markdown.read_text()
    assert "| control | control_relu | (control) |" in table and "Δ" in table
    with result.table_csv.open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 3 * 2 and json.loads(lines[0]["values"])

    # Rerun: nothing retrained, every result reused; a changed setting retrains that variant only.
    trained.clear()
    again = run_sweep(request, model_loader=lambda *_: tiny_model)
    assert trained == [] and {o.status for o in again.outcomes} == {"reused"}
    changed = helpers.sweep_recipe(
        tmp_path,
        corpus,
        variants=[
            {"name": "control", "arch": "control_relu"},
            {"name": "consistency", "arch": "tsae_temporal_consistency", "grid": {"window_size": [2, 3]},
             "set": {"consistency_coefficient": 0.5}},
        ],
    )  # fmt: skip
    run_sweep(SweepRequest(recipe_path=changed, out=tmp_path / "sweep"), model_loader=lambda *_: tiny_model)
    assert sorted(trained) == sorted(f"consistency[window_size={w}]-s{s}" for w in (2, 3) for s in (0, 1))


def test_every_shipped_recipe_validates():
    recipes = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))
    assert len(recipes) >= 8
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.gpu_note, f"{path.name} says nothing about the sizes a GPU user should use"
        assert expand(recipe)


def test_a_grid_variants_directory_with_commas_is_one_sae_spec(tmp_path):
    """A two-key grid names its variant `name[a=1,b=2]`: the sweep passes that directory to `run`, whose --sae
    splits on commas. An existing path stays whole; anything else still splits."""
    from tsae_evals.saes import split_sae_specs

    grid_dir = tmp_path / "consistency[window_size=8,consistency_coefficient=1.0]"
    grid_dir.mkdir()
    assert split_sae_specs([str(grid_dir), "a,b", "a"]) == [str(grid_dir), "a", "b"]
