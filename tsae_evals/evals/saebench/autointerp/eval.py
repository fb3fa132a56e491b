"""SAE-Bench's autointerp (`run_eval_single_sae`) on our model object, SAE and token windows, judged by any
OpenAI-compatible endpoint.

What it absorbs:
- SAE-Bench builds `openai.OpenAI(api_key=...)` itself (OpenAI's URL) and asks for gpt-4o-mini by name; inside
  this eval its `OpenAI` is a client aimed at `base_url` that asks for `judge_model` instead. Prompts, parsing
  and scoring stay its own.
- It tokenizes a hub dataset (`dataset_utils.load_and_tokenize_dataset`); it is handed the run's windows instead,
  and `total_tokens` is their token count, which its dead-latent threshold (a count of firings) is scaled by.
- It caches those tokens in its artifacts folder under a name keyed on model, token count and context only; ours
  also keys on the tokens themselves, so a cached file always holds the windows it is handed.
- It runs its API calls with `asyncio.run`, which fails under a running event loop (a notebook); there it runs
  in a worker thread.
- Its aggregation (mean and std of the per-latent scores) sits in `run_eval` beside a hub model load and a file
  write; those two lines are repeated here, so an SAE with no scored latent gives NaN, as in SAE-Bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar
from unittest import mock

from tsae_evals.errors import Unavailable, UsageError
from tsae_evals.evals.saebench.adapter import artifacts_folder, contained, saebench_output, saebench_sae
from tsae_evals.evals.saebench.autointerp.config import AutoInterpConfig
from tsae_evals.evals.saebench.autointerp.result import AutoInterpResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext, RunShape

T = TypeVar("T")


def check(shape: RunShape, cfg: AutoInterpConfig) -> None:
    """Refuse before any model loads: no judge to call, or windows too short for the examples it is shown."""
    api_key(cfg)
    if shape.context_size <= 2 * cfg.buffer:
        raise UsageError(
            f"autointerp shows {cfg.buffer} tokens either side of each example's token, which needs windows longer "
            f"than {2 * cfg.buffer} tokens (--context-size is {shape.context_size})",
            f"raise --context-size above {2 * cfg.buffer} or lower autointerp.buffer",
        )
    if cfg.n_top_ex_for_scoring + cfg.n_random_ex_for_scoring + cfg.n_iw_sampled_ex_for_scoring == 0:
        raise UsageError("autointerp has no examples to score", "set autointerp.n_random_ex_for_scoring above 0")


def api_key(cfg: AutoInterpConfig) -> str:
    """The judge's key, read from the environment variable the config names (never from the config)."""
    if cfg.base_url is None:
        raise Unavailable(
            "autointerp needs an LLM judge and no endpoint is configured",
            "pass --config autointerp.base_url=URL (an OpenAI-compatible /v1 endpoint, e.g. "
            f"https://api.openai.com/v1) and set ${cfg.api_key_env} to its API key",
        )
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        raise Unavailable(
            f"autointerp reads its judge's API key from ${cfg.api_key_env}, which is unset or empty",
            f"export {cfg.api_key_env}=<key> (any non-empty value for a server that needs none), or name another "
            "variable with --config autointerp.api_key_env=NAME",
        )
    return key


class JudgeClient:
    """The part of `openai.OpenAI` SAE-Bench uses (`chat.completions.create`), aimed at our endpoint and model."""

    def __init__(self, cfg: AutoInterpConfig, key: str):
        import openai

        self.model = cfg.judge_model
        self.client = openai.OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.request_timeout_s)
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **kwargs: Any) -> Any:
        return self.client.chat.completions.create(**{**kwargs, "model": self.model})


@contextlib.contextmanager
def judge_and_tokens(client: JudgeClient, tokens: torch.Tensor) -> Iterator[None]:
    """SAE-Bench's client construction answered by our client (one, reused: it builds one per request), and its
    dataset loader answered by our windows."""
    from sae_bench.evals.autointerp import main as autointerp_main
    from sae_bench.sae_bench_utils import dataset_utils

    def windows(dataset_name: str, context_size: int, total_tokens: int, tokenizer: Any, **_: Any) -> torch.Tensor:
        return tokens

    with (
        mock.patch.object(autointerp_main, "OpenAI", lambda **_: client),
        mock.patch.object(dataset_utils, "load_and_tokenize_dataset", windows),
    ):
        yield


def outside_event_loop(fn: Callable[[], T]) -> T:
    """Call `fn` here, or in a worker thread when this thread already runs an event loop (`asyncio.run` inside
    it would refuse)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def saebench_config(ctx: EvalContext, cfg: AutoInterpConfig) -> Any:
    from sae_bench.evals.autointerp.eval_config import AutoInterpEvalConfig

    return AutoInterpEvalConfig(
        model_name=str(ctx.model.cfg.model_name),
        n_latents=None if cfg.latents is not None else cfg.n_latents,
        override_latents=list(cfg.latents) if cfg.latents is not None else None,
        dead_latent_threshold=cfg.dead_latent_threshold,
        random_seed=ctx.seed,
        dataset_name=ctx.windows.source,
        llm_context_size=ctx.windows.context_size,
        llm_batch_size=ctx.batch_size,
        llm_dtype="float32",
        buffer=cfg.buffer,
        no_overlap=cfg.no_overlap,
        act_threshold_frac=cfg.act_threshold_frac,
        total_tokens=int(ctx.windows.tokens.numel()),
        scoring=True,
        max_tokens_in_explanation=cfg.max_tokens_in_explanation,
        use_demos_in_explanation=cfg.use_demos_in_explanation,
        n_top_ex_for_generation=cfg.n_top_ex_for_generation,
        n_iw_sampled_ex_for_generation=cfg.n_iw_sampled_ex_for_generation,
        n_top_ex_for_scoring=cfg.n_top_ex_for_scoring,
        n_random_ex_for_scoring=cfg.n_random_ex_for_scoring,
        n_iw_sampled_ex_for_scoring=cfg.n_iw_sampled_ex_for_scoring,
    )


@register_eval("autointerp", version=1, config=AutoInterpConfig, group="saebench", check=check)
def autointerp(ctx: EvalContext, cfg: AutoInterpConfig) -> AutoInterpResult:
    """SAE-Bench autointerp: an LLM judge explains latents from their top examples, then predicts where they fire."""
    import torch
    from sae_bench.evals.autointerp import main as autointerp_main
    from sae_bench.evals.autointerp.eval_output import (
        AutoInterpEvalOutput,
        AutoInterpMetricCategories,
        AutoInterpMetrics,
    )

    key = api_key(cfg)
    client = JudgeClient(cfg, key)
    d_sae = int(ctx.sae.cfg.d_sae)
    outside = [latent for latent in cfg.latents or [] if not 0 <= latent < d_sae]
    if outside:
        raise UsageError(
            f"autointerp.latents {outside} are outside the SAE's {d_sae} latents", f"pick latents in 0..{d_sae - 1}"
        )
    saebench_cfg = saebench_config(ctx, cfg)
    sae = saebench_sae(ctx)
    tokens = ctx.windows.tokens.to(ctx.device)
    digest = hashlib.sha256(ctx.windows.tokens.cpu().numpy().tobytes()).hexdigest()[:16]
    folder = artifacts_folder(ctx, "autointerp", {"dataset": ctx.windows.source, "tokens_sha256": digest})
    with contained("autointerp"), judge_and_tokens(client, tokens):
        per_latent = outside_event_loop(
            lambda: autointerp_main.run_eval_single_sae(saebench_cfg, sae, ctx.model, ctx.device, str(folder), key)
        )
        # SAE-Bench's `run_eval` aggregation, as it writes it.
        scores = torch.tensor([result["score"] for result in per_latent.values()])  # type: ignore[index]
        output = saebench_output(
            AutoInterpEvalOutput,
            eval_config=saebench_cfg,
            metrics=AutoInterpMetricCategories(
                autointerp=AutoInterpMetrics(
                    autointerp_score=scores.mean().item(), autointerp_std_dev=scores.std().item()
                )
            ),
            details=[],
            unstructured=per_latent,
        )
    return AutoInterpResult.from_output(output)
