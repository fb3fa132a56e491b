"""SAE-Bench's autointerp through the runner, judged by a local OpenAI-compatible server the test starts.

The judge answers in the formats SAE-Bench's parsers expect. It numbers its explanations ("pattern k") and, when
scoring, answers "None" for even k and every example for odd k. SAE-Bench's random scoring examples carry no
activations (never active) and its top and importance-sampled ones are drawn where the latent fires (active), so
each latent's score is n_random/n or (n_top + n_iw)/n by the parity of its explanation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.judge import Judge, running_judge
from tsae_evals.errors import UsageError
from tsae_evals.evals.saebench.adapter import validate_with_saebench
from tsae_evals.evals.saebench.autointerp.config import AutoInterpConfig
from tsae_evals.evals.saebench.autointerp.eval import check, outside_event_loop
from tsae_evals.evals.saebench.autointerp.result import AutoInterpResult
from tsae_evals.results import read_record
from tsae_evals.runner import RunRequest, run

KEY_ENV = "TSAE_TEST_JUDGE_KEY"
KEY = "sk-test-not-a-real-key-41d3"
JUDGE = "tiny-judge"
N_SCORED = 14  # SAE-Bench's defaults: 2 top + 10 random + 2 importance-sampled examples per latent
N_ACTIVE = 4
N_LATENTS = 4
CONTEXT = 80
N_WINDOWS = 32


@pytest.fixture
def judge_server(request: pytest.FixtureRequest) -> Iterator[Judge]:
    with running_judge(getattr(request, "param", "parity")) as judge:
        yield judge


@pytest.fixture(scope="module")
def model() -> Any:
    return helpers.tiny_model(n_ctx=CONTEXT)


def run_autointerp(model: Any, sae_dir: Path, corpus: Path, tmp_path: Path, overrides: list[str]) -> Path:
    outcomes = run(
        RunRequest(
            sae_specs=[str(sae_dir)],
            eval_names="autointerp",
            dataset=str(corpus),
            n_windows=N_WINDOWS,
            context_size=CONTEXT,
            results_dir=tmp_path / "results",
            artifacts_dir=tmp_path / "artifacts",
            config_overrides=overrides,
        ),
        model_loader=lambda name, device: model,
    )
    (outcome,) = outcomes
    assert outcome.status == "ok", outcome.message
    assert outcome.path is not None
    return outcome.path


def test_judge_explains_and_scores_every_latent(judge_server, model, sae_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    corpus = helpers.write_corpus(tmp_path / "corpus.txt", words_per_document=200)
    overrides = [
        f"autointerp.base_url={judge_server.url}",
        f"autointerp.judge_model={JUDGE}",
        f"autointerp.api_key_env={KEY_ENV}",
        f"autointerp.n_latents={N_LATENTS}",
    ]
    path = run_autointerp(model, sae_dir, corpus, tmp_path, overrides)

    explain, score = judge_server.phases()
    assert len(explain) == len(score) == N_LATENTS == len(judge_server.requests) // 2
    assert all(headers["authorization"] == f"Bearer {KEY}" for headers, _ in judge_server.requests)
    assert all(body["model"] == JUDGE for _, body in judge_server.requests)
    # Generation: the 10 top + 5 importance-sampled examples, activating tokens marked.
    for body in explain:
        user = body["messages"][1]["content"]
        assert re.findall(r"^(\d+)\. ", user, flags=re.M) == [str(i) for i in range(1, 16)]
        assert "<<" in user
    # Scoring: the parsed explanation handed back, and 14 unmarked examples.
    for body in score:
        user = body["messages"][1]["content"]
        assert re.search(r"this neuron fires on pattern \d+\.", user)
        assert re.findall(r"^(\d+)\. ", user, flags=re.M) == [str(i) for i in range(1, N_SCORED + 1)]

    text = path.read_text()
    assert KEY not in text
    record = read_record(path)
    validate_with_saebench(record, AutoInterpResult.OUTPUT)
    per_latent = record.eval_result_unstructured
    assert len(per_latent) == N_LATENTS
    expected = []
    for latent in per_latent.values():
        pattern = int(latent["explanation"].removeprefix("pattern "))
        odd = pattern % 2 == 1
        assert latent["predictions"] == (list(range(1, N_SCORED + 1)) if odd else [])
        assert len(latent["correct seqs"]) == N_ACTIVE
        expected.append((N_ACTIVE if odd else N_SCORED - N_ACTIVE) / N_SCORED)
        assert latent["score"] == pytest.approx(expected[-1])
    mean = sum(expected) / len(expected)
    std = math.sqrt(sum((x - mean) ** 2 for x in expected) / (len(expected) - 1))
    metrics = record.eval_result_metrics["autointerp"]
    assert metrics["autointerp_score"] == pytest.approx(mean, abs=1e-6)
    assert metrics["autointerp_std_dev"] == pytest.approx(std, abs=1e-6)
    assert record.headline() == {"autointerp": metrics["autointerp_score"]}
    assert list((tmp_path / "artifacts" / "autointerp").iterdir())  # SAE-Bench's token cache, in our folder


@pytest.mark.parametrize("judge_server", ["I cannot tell."], indirect=True)
def test_unparseable_scores_give_nan(judge_server, model, sae_dir, tmp_path, monkeypatch):
    """SAE-Bench drops a latent whose predictions it cannot parse; with none left its mean is NaN, kept NaN."""
    monkeypatch.setenv(KEY_ENV, KEY)
    corpus = helpers.write_corpus(tmp_path / "corpus.txt", words_per_document=200)
    overrides = [
        f"autointerp.base_url={judge_server.url}",
        f"autointerp.api_key_env={KEY_ENV}",
        "autointerp.n_latents=2",
    ]
    path = run_autointerp(model, sae_dir, corpus, tmp_path, overrides)

    assert len(judge_server.phases()[1]) == 2
    record = read_record(path)
    validate_with_saebench(record, AutoInterpResult.OUTPUT)
    metrics = record.eval_result_metrics["autointerp"]
    assert math.isnan(metrics["autointerp_score"]) and math.isnan(metrics["autointerp_std_dev"])
    assert "NaN" in path.read_text()
    assert record.eval_result_unstructured == {}


SHAPE_OK = AutoInterpConfig(base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)


def test_check_refuses_without_base_url(monkeypatch):
    from tsae_evals.context import RunShape

    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(UsageError, match="no endpoint is configured") as caught:
        check(RunShape(8, CONTEXT, True), AutoInterpConfig(api_key_env=KEY_ENV))
    assert "autointerp.base_url" in caught.value.fix


def test_check_refuses_without_key(monkeypatch):
    from tsae_evals.context import RunShape

    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UsageError, match=KEY_ENV):
        check(RunShape(8, CONTEXT, True), SHAPE_OK)
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(UsageError, match=KEY_ENV):
        check(RunShape(8, CONTEXT, True), SHAPE_OK)


def test_check_refuses_windows_shorter_than_examples(monkeypatch):
    from tsae_evals.context import RunShape

    monkeypatch.setenv(KEY_ENV, KEY)
    check(RunShape(8, 21, True), SHAPE_OK)
    with pytest.raises(UsageError, match="context-size"):
        check(RunShape(8, 20, True), SHAPE_OK)


def test_runner_refuses_before_the_model_loads(sae_dir, corpus_file, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def no_model(name: str, device: str) -> Any:
        raise AssertionError("the model must not load")

    request = RunRequest(
        sae_specs=[str(sae_dir)],
        eval_names="autointerp",
        dataset=str(corpus_file),
        results_dir=tmp_path / "results",
        config_overrides=["autointerp.base_url=http://127.0.0.1:9/v1"],
    )
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        run(request, model_loader=no_model)
    assert not (tmp_path / "results").exists()


def test_saebench_asyncio_run_works_under_a_running_loop():
    """A notebook runs an event loop; SAE-Bench's `asyncio.run` then goes to a worker thread."""
    import asyncio

    async def answer() -> int:
        return 42

    async def notebook() -> int:
        return outside_event_loop(lambda: asyncio.run(answer()))

    assert asyncio.run(notebook()) == 42
    assert outside_event_loop(lambda: asyncio.run(answer())) == 42
