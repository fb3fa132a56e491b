"""The SAE-Bench adapters' shared part and the offline data they are handed (sparse probing, sae-probes, SCR/TPP)."""

from __future__ import annotations

import os
import random
import re
import statistics

import pytest
import torch

from tests import helpers
from tsae_evals.data import bios, labelled
from tsae_evals.errors import EvalFailed, UsageError
from tsae_evals.results import read_record
from tsae_evals.runner import RunRequest, run

# --- offline labelled data ------------------------------------------------------------------------------------


def test_offline_class_sets_have_sae_benchs_split_sizes_and_no_overlap():
    train, test = labelled.train_test_split("sae-probes/ag_news", 40, 20, seed=3)
    assert sorted(train) == sorted(test) == ["0", "1", "2"]
    assert all(len(texts) == 20 for texts in train.values()) and all(len(texts) == 10 for texts in test.values())
    every_train = {text for texts in train.values() for text in texts}
    every_test = {text for texts in test.values() for text in texts}
    assert not every_train & every_test
    assert labelled.train_test_split("sae-probes/ag_news", 40, 20, seed=3) == (train, test)
    assert labelled.train_test_split("sae-probes/ag_news", 40, 20, seed=4) != (train, test)


def test_every_default_class_set_reads_with_at_least_two_classes():
    for name in labelled.DEFAULT_CLASS_SETS:
        classes = labelled.class_texts(name)
        assert len(classes) >= 2, name
        assert min(len(texts) for texts in classes.values()) >= 500, name


def test_code_classes_are_the_languages_of_their_files():
    classes = labelled.class_texts("sae-probes/code")
    assert sorted(classes) == ["C", "HTML", "Python"]
    # independent of the labels: HTML files are full of tags, C files of semicolons and braces
    html_tags = statistics.fmean("<" in text and ">" in text for text in classes["HTML"][:200])
    assert html_tags > 0.9


def test_an_unknown_offline_set_is_refused_before_the_model_loads(tmp_path):
    def no_model(*_):
        raise AssertionError("the model must not load")

    sae = helpers.save_sae(helpers.tiny_sae(), tmp_path / "sae")
    request = RunRequest(
        sae_specs=[str(sae)],
        eval_names="sparse_probing",
        dataset=str(helpers.write_corpus(tmp_path / "c.txt")),
        results_dir=tmp_path / "results",
        config_overrides=['sparse_probing.dataset_names=["sae-probes/ag_newz"]'],
    )
    with pytest.raises(UsageError, match="ag_newz.*did you mean sae-probes/ag_news"):
        run(request, model_loader=no_model)


# --- templated biographies ------------------------------------------------------------------------------------


def test_biographies_carry_gender_only_in_names_and_pronouns_and_profession_only_in_activities():
    rng = random.Random(0)
    for profession in bios.ACTIVITIES:
        for gender in ("male", "female"):
            text = bios.biography(profession, gender, rng).lower()
            words = set(re.findall(r"[a-z]+", text))
            female, male = {"she", "her"} & words, {"he", "his", "him"} & words
            assert (bool(female), bool(male)) == (gender == "female", gender == "male"), text
            # the title word never appears: the profession must be read from what the person does
            assert profession.split("_")[0] not in words, text
    for sentence in (*[s for group in bios.ACTIVITIES.values() for s in group], *bios.FILLER):
        assert not {"he", "she", "his", "her", "him"} & set(re.findall(r"[a-z]+", sentence.lower())), sentence


def test_bios_frame_uses_saebench_codes_and_fills_every_quadrant():
    from sae_bench.sae_bench_utils.dataset_info import gender_dict, profession_dict

    frame = bios.bios_frame("train", 7, 0)
    counts = frame.groupby(["profession", "gender"]).size()
    assert set(counts) == {7} and len(counts) == 2 * len(bios.ACTIVITIES)
    assert set(frame["profession"]) == {profession_dict[p] for p in bios.ACTIVITIES}
    assert set(frame["gender"]) == set(gender_dict.values())
    nurses = frame[frame["profession"] == profession_dict["nurse"]]
    assert all(" she " in f" {t.lower()} " for t in nurses[nurses["gender"] == gender_dict["female"]]["hard_text"])


# --- what SAE-Bench's code may not leave behind ---------------------------------------------------------------


def test_contained_restores_grad_mode_rngs_cwd_and_jaxtyping(tmp_path):
    import jaxtyping

    from tsae_evals.evals.saebench.adapter import contained

    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    cwd = os.getcwd()
    with torch.no_grad(), contained("test"):
        assert jaxtyping.config.jaxtyping_disable
        torch.set_grad_enabled(True)
        torch.manual_seed(123)
        random.seed(9)
        os.chdir(tmp_path)
        print("SAE-Bench chatter")
        assert torch.is_grad_enabled()
    assert torch.rand(1) == expected_next
    assert os.getcwd() == cwd and not jaxtyping.config.jaxtyping_disable


def test_contained_turns_library_errors_into_eval_failures_naming_the_eval():
    from tsae_evals.evals.saebench.adapter import contained

    with pytest.raises(EvalFailed, match="SAE-Bench absorption failed: KeyError"), contained("absorption"):
        raise KeyError("x")
    with pytest.raises(UsageError), contained("absorption"):
        raise UsageError("bad", "fix")


# --- the adapters on the tiny model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_saes_run(tmp_path_factory, device):
    """sparse_probing and scr on two SAEs in one run: the model side is computed once and shared."""
    root = tmp_path_factory.mktemp("adapters")
    model = helpers.tiny_model(n_ctx=80, device=device)
    request = helpers.two_tiny_saes_request(
        root,
        "sparse_probing,scr",
        [
            'sparse_probing.dataset_names=["sae-probes/ag_news"]',
            "sparse_probing.probe_train_set_size=40",
            "sparse_probing.probe_test_set_size=20",
            "scr.seeds=[0,1,2]",
            'scr.profession_pairs=[["professor","nurse"]]',
            "scr.train_set_size=40",
            "scr.test_set_size=24",
            "scr.probe_epochs=2",
        ],
        device=device,
        corpus_kwargs={"words_per_document": 200},
        n_windows=16,
        context_size=64,
    )
    cwd_before = set(os.listdir())
    outcomes = run(request, model_loader=lambda *_: model)
    assert set(os.listdir()) == cwd_before, "an adapter wrote into the working directory"
    return root, outcomes


def test_both_saes_succeed_and_share_the_models_activations(two_saes_run):
    root, outcomes = two_saes_run
    assert [o.status for o in outcomes] == ["ok"] * 4, [o.message for o in outcomes]
    cached = sorted(p.name for p in (root / "artifacts" / "sparse_probing").rglob("*.pt"))
    assert cached == ["sae-probes_ag_news_activations.pt"]  # one per dataset, not one per SAE
    # SCR: one folder per seed, each holding the activations of its one profession pair
    scr_cached = sorted((root / "artifacts" / "scr").rglob("*_activations.pt"))
    assert len(scr_cached) == 3


def test_scr_reports_the_mean_and_spread_of_its_seeds(two_saes_run):
    root, outcomes = two_saes_run
    record = read_record(next(o.path for o in outcomes if o.eval_name == "scr" and o.path is not None))
    # one pair, so each seed's detail row is that seed's average: the reported mean and sd follow from the rows
    rows = record.eval_result_details
    assert [row["dataset_name"].rsplit("=", 1)[1] for row in rows] == ["0", "1", "2"]
    counted = record.eval_result_unstructured["seeds_with_value"]
    for n in (2, 5, 10):
        # SAE-Bench gives None where a seed's probe accuracies leave its ratio undefined; those seeds do not count
        per_seed = [value for row in rows if (value := row[f"scr_metric_threshold_{n}"]) is not None]
        assert counted[f"scr_metric_threshold_{n}"] == len(per_seed) >= 2
        assert record.eval_result_metrics["scr_metrics"][f"scr_metric_threshold_{n}"] == pytest.approx(
            statistics.fmean(per_seed)
        )
        assert record.eval_result_metrics["seed_spread"][f"scr_metric_threshold_{n}"] == pytest.approx(
            statistics.stdev(per_seed)
        )
    # the tiny SAE has 64 latents: thresholds beyond its width are not run, and stay null
    assert record.eval_result_metrics["scr_metrics"]["scr_metric_threshold_100"] is None
    assert record.metric_info["seed_spread.scr_metric_threshold_10"].label == "scr_10_sd"


def test_sae_probes_fits_the_model_baseline_once_for_every_sae_of_a_run(tmp_path, monkeypatch, device):
    from sae_probes import run_baselines

    fits = []
    logreg = run_baselines.METHODS["logreg"]

    def counted(*args, **kwargs):
        fits.append(args[0].shape)
        return logreg(*args, **kwargs)

    monkeypatch.setitem(run_baselines.METHODS, "logreg", counted)
    model = helpers.tiny_model(n_ctx=32, device=device)
    request = helpers.two_tiny_saes_request(
        tmp_path,
        "sparse_probing_sae_probes",
        ['sparse_probing_sae_probes.dataset_names=["5_hist_fig_ismale"]'],
        device=device,
    )
    outcomes = run(request, model_loader=lambda *_: model)
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.message for o in outcomes]
    assert len(fits) == 1
    llm = [read_record(o.path).eval_result_metrics["llm"] for o in outcomes if o.path is not None]
    assert llm[0] == llm[1] and 0.0 <= llm[0]["llm_test_accuracy"] <= 1.0
    # each SAE's own results lived in a folder of its own, gone with the call
    assert not list((tmp_path / "artifacts").rglob("tsae_evals-*"))
