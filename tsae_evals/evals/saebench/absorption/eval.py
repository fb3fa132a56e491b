"""SAE-Bench's first-letter feature absorption on our model object and SAE: `run_eval`'s per-SAE loop (its k-sparse
probing, then its absorption experiment, then its aggregation), without its hub model load.

What it absorbs:
- The word's position. SAE-Bench reads the model at `prompt_token_pos=-6` of `"{word} has the first letter:"`, the
  word's token for GPT-2-like tokenizers. We tokenize its prompt for every vocabulary word with the model's own
  tokenizer and use the position where the word's last token lands (SmolLM2: -6, every word); the position used,
  how many words agree and the prompt length are recorded (`eval_config.prompt_token_pos` and the notes in
  `eval_result_unstructured`). A prompt longer than the model's context would be cut silently, so it declines.
- Its vocabulary. It probes every alphabetic token, read from `tokenizer.vocab`, whose order changes from process
  to process (so its seeded train/test split did too); we hand it that list sorted and, by default, at most
  `words_per_letter` words per letter (its full 47k-word SmolLM2 vocabulary takes hours on a CPU).
- Its files. Probes and activations of the model go to one artifacts folder per (model, hook, prompt, vocabulary,
  seed), shared by every SAE; each SAE's k-sparse probes and absorption tables go below it and are always
  recomputed (SAE-Bench would reuse any file of the same SAE name). Nothing is written into site-packages or the
  working directory.
- Its decline. With fewer than `min_feats_for_eval` letters whose ground-truth probe passes `min_GT_probe_f1`,
  `run_eval` prints a line and returns nothing; we return NaN metrics and record the counts. That probe is the
  model's, not the SAE's, so we score it (as its `build_metrics_df` does) before the SAE-side work: a declining
  model costs no k-sparse training, and a vocabulary lacking letters (which its metric code cannot score) declines
  instead of crashing.
- Its side effects: it turns grad mode on globally and reseeds nothing (its probes train from whatever RNG state
  it finds); `contained` restores grad mode and RNG, and we seed before each step so a cached model side does not
  change an SAE's numbers.
- Its forwards run the whole model for one residual hook; the model is stopped after the hook's block (same
  activations, several times faster). Right padding, TransformerLens' default, would move the word of every shorter
  prompt in a batch off `prompt_token_pos`; tokenizers that give words of unequal length get left padding.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from unittest import mock

from tsae_evals.errors import EvalFailed
from tsae_evals.evals.saebench.absorption.config import AbsorptionConfig
from tsae_evals.evals.saebench.absorption.result import AbsorptionNotes, AbsorptionResult, PromptPosition
from tsae_evals.evals.saebench.adapter import artifacts_folder, contained, saebench_output, saebench_sae
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    import torch

    from tsae_evals.context import EvalContext

SAEBENCH_TOKEN_POS = -6
"""SAE-Bench's `AbsorptionEvalConfig.prompt_token_pos`."""
MAX_ICL_EXAMPLES = 10
"""ICL examples per prompt, fixed inside SAE-Bench's dataset builder and absorption calculator."""
TRAIN_FRACTION = 0.8
"""Share of the vocabulary its probe trains on; the rest is where it scores probes and measures absorption."""
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def first_letter(word: str) -> str:
    return word.strip()[0].lower()


def alphabetic_vocabulary(tokenizer: Any, words_per_letter: int | None, seed: int) -> list[str]:
    """SAE-Bench's alphabetic vocabulary (`get_alpha_tokens`), sorted, at most `words_per_letter` per first letter."""
    from sae_bench.evals.absorption.vocab import get_alpha_tokens

    words = sorted(set(get_alpha_tokens(tokenizer)))
    if words_per_letter is None:
        return words
    rng = random.Random(seed)
    by_letter: dict[str, list[str]] = {}
    for word in words:
        by_letter.setdefault(first_letter(word), []).append(word)
    kept = [
        word
        for group in by_letter.values()
        for word in (group if len(group) <= words_per_letter else rng.sample(group, words_per_letter))
    ]
    return sorted(kept)


def prompt_position(
    tokenizer: Any, template: str, words: list[str], prepend_bos: bool, fixed: int | None = None
) -> PromptPosition:
    """Where the word's token lands, counted from the end, in SAE-Bench's prompt for each of `words`.

    Each word's prompt is built by SAE-Bench's `create_icl_prompt` (the same ten examples for all) and tokenized
    with offsets; the token holding the word's last character gives the word's position. The most common one is
    used unless `fixed` is given. The longest prompt is the one made of the words with most tokens.
    """
    from sae_bench.evals.absorption.prompting import create_icl_prompt

    def prompt(word: str, examples: list[str]) -> str:
        return create_icl_prompt(
            word,
            examples=examples,
            base_template=template,
            max_icl_examples=MAX_ICL_EXAMPLES,
            shuffle_examples=False,
            check_contamination=False,
            prepend_separator_to_first_example=True,
        ).base

    examples = words[:MAX_ICL_EXAMPLES]
    prompts = [prompt(word, examples) for word in words]
    encoded = tokenizer(prompts, return_offsets_mapping=True, add_special_tokens=False)
    word_at = template.index("{word}")
    positions: list[int] = []
    word_tokens: list[int] = []
    for word, text, offsets in zip(words, prompts, encoded["offset_mapping"], strict=True):
        start = len(text) - len(template.format(word=word)) + word_at
        last = start + len(word) - 1
        holding = [i for i, (a, b) in enumerate(offsets) if a <= last < b]
        positions.append(holding[0] - len(offsets) if holding else 0)
        word_tokens.append(sum(1 for a, b in offsets if a <= last and b > start))
    counts = Counter(positions)
    used = fixed if fixed is not None else counts.most_common(1)[0][0]
    longest = [word for _, word in sorted(zip(word_tokens, words, strict=True), reverse=True)][: MAX_ICL_EXAMPLES + 1]
    longest_ids = tokenizer(prompt(longest[0], longest[1:]), add_special_tokens=False)["input_ids"]
    return PromptPosition(
        prompt_token_pos=used,
        derived=fixed is None,
        saebench_default=SAEBENCH_TOKEN_POS,
        words_checked=len(words),
        words_at_position=counts[used],
        prompt_tokens=len(longest_ids) + int(prepend_bos),
        equal_length_prompts=len(set(word_tokens)) == 1,
    )


@contextlib.contextmanager
def as_saebench_sees_it(model: Any, layer: int, vocabulary: list[str], left_padding: bool) -> Iterator[None]:
    """Our vocabulary in place of its `get_alpha_tokens`, forwards stopped after the hook's block, and (for
    tokenizers with words of unequal length) left padding; all undone on exit."""
    from sae_bench.evals.absorption import common, feature_absorption

    run_with_cache = model.run_with_cache

    def run_to_hook(*args: Any, **kwargs: Any) -> Any:
        # It only ever caches `blocks.{layer}.hook_resid_post`; later blocks cannot change it.
        kwargs.setdefault("stop_at_layer", layer + 1)
        return run_with_cache(*args, **kwargs)

    def words(_tokenizer: Any, *_args: Any, **_kwargs: Any) -> list[str]:
        return list(vocabulary)

    padding_side = model.tokenizer.padding_side
    try:
        if left_padding:
            model.tokenizer.padding_side = "left"
        with (
            mock.patch.object(common, "get_alpha_tokens", words),
            mock.patch.object(feature_absorption, "get_alpha_tokens", words),
            mock.patch.object(model, "run_with_cache", run_to_hook),
        ):
            yield
    finally:
        model.tokenizer.padding_side = padding_side


def reseed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def probe_f1_per_letter(probe: Any, activations: torch.Tensor, labels: list[tuple[str, int]]) -> dict[str, float]:
    """The ground-truth probe's F1 per letter on held-out words, as SAE-Bench's `build_metrics_df` scores it."""
    import numpy as np
    import torch
    from sklearn import metrics

    device = next(probe.parameters()).device
    with torch.no_grad():
        scores = probe(activations.to(device)).float().cpu().numpy()
    answers = np.array([LETTERS[label] for _, label in labels])
    return {
        letter: float(metrics.f1_score(answers == letter, scores[:, i] > 0.0, zero_division=0.0))
        for i, letter in enumerate(LETTERS)
    }


def saebench_config(ctx: EvalContext, cfg: AbsorptionConfig, position: int, seed: int) -> Any:
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig

    return AbsorptionEvalConfig(
        model_name=str(ctx.model.cfg.model_name),
        random_seed=seed,
        f1_jump_threshold=cfg.f1_jump_threshold,
        max_k_value=cfg.max_k_value,
        prompt_template=cfg.prompt_template,
        prompt_token_pos=position,
        llm_batch_size=ctx.batch_size,
        llm_dtype="float32",
        k_sparse_probe_l1_decay=cfg.k_sparse_probe_l1_decay,
        k_sparse_probe_batch_size=cfg.k_sparse_probe_batch_size,
        k_sparse_probe_num_epochs=cfg.k_sparse_probe_num_epochs,
        min_GT_probe_f1=cfg.min_GT_probe_f1,
        min_feats_for_eval=cfg.min_feats_for_eval,
        eval_k_sparse_probe_batch_size=cfg.eval_k_sparse_probe_batch_size,
        precalc_k_sparse_probe_sae_acts=cfg.precalc_k_sparse_probe_sae_acts,
    )


def build_output(saebench_cfg: Any, means: dict[str, float], details: list[Any], notes: AbsorptionNotes) -> Any:
    """The same `AbsorptionEvalOutput` as `run_eval` assembles, our notes as its unstructured part."""
    from sae_bench.evals.absorption.eval_output import (
        AbsorptionEvalOutput,
        AbsorptionMeanMetrics,
        AbsorptionMetricCategories,
    )

    return saebench_output(
        AbsorptionEvalOutput,
        eval_config=saebench_cfg,
        metrics=AbsorptionMetricCategories(mean=AbsorptionMeanMetrics(**means)),
        details=details,
        unstructured=notes.model_dump(),
    )


MEAN_METRICS = (
    "mean_absorption_fraction_score",
    "mean_full_absorption_score",
    "mean_num_split_features",
    "std_dev_absorption_fraction_score",
    "std_dev_full_absorption_score",
    "std_dev_num_split_features",
)


@register_eval("absorption", version=1, config=AbsorptionConfig, group="saebench")
def absorption(ctx: EvalContext, cfg: AbsorptionConfig) -> AbsorptionResult:
    """SAE-Bench first-letter absorption: how often letter latents stay silent while others carry the letter."""
    seed = ctx.seed if cfg.random_seed is None else cfg.random_seed
    sae = saebench_sae(ctx)
    layer = int(sae.cfg.hook_layer)
    if ctx.hook_name != f"blocks.{layer}.hook_resid_post":
        raise EvalFailed(
            f"SAE-Bench absorption reads blocks.{layer}.hook_resid_post (fixed in its code); this SAE reads "
            f"{ctx.hook_name}"
        )
    model = ctx.model
    vocabulary = alphabetic_vocabulary(model.tokenizer, cfg.words_per_letter, seed)
    per_letter = Counter(first_letter(word) for word in vocabulary)
    notes = AbsorptionNotes(
        position=None,
        vocabulary_words=len(vocabulary),
        words_per_letter={letter: per_letter[letter] for letter in LETTERS},
        probe_f1={},
        letters_passing=None,
        letters_needed=cfg.min_feats_for_eval,
    )

    def declined(why: str, position: int) -> AbsorptionResult:
        notes.declined = why
        output = build_output(
            saebench_config(ctx, cfg, position, seed), dict.fromkeys(MEAN_METRICS, float("nan")), [], notes
        )
        return AbsorptionResult.from_output(output, notes=notes)

    # Its held-out words also supply their own ICL examples, so they must outnumber them.
    held_out = len(vocabulary) - int(len(vocabulary) * TRAIN_FRACTION)
    if held_out <= MAX_ICL_EXAMPLES:
        return declined(
            f"vocabulary too small: {len(vocabulary)} alphabetic words leave {held_out} held-out words, "
            f"SAE-Bench's prompts need more than {MAX_ICL_EXAMPLES}",
            cfg.prompt_token_pos or SAEBENCH_TOKEN_POS,
        )
    position = prompt_position(
        model.tokenizer, cfg.prompt_template, vocabulary, bool(model.cfg.default_prepend_bos), cfg.prompt_token_pos
    )
    notes.position = position
    pos = position.prompt_token_pos
    if position.prompt_tokens > model.cfg.n_ctx:
        return declined(
            f"prompts of up to {position.prompt_tokens} tokens do not fit the model's context of {model.cfg.n_ctx} "
            f"(TransformerLens would cut them)",
            pos,
        )

    saebench_cfg = saebench_config(ctx, cfg, pos, seed)
    model_side = artifacts_folder(
        ctx,
        "absorption",
        {
            "prompt_template": cfg.prompt_template,
            "prompt_token_pos": pos,
            "words_per_letter": cfg.words_per_letter,
            "random_seed": seed,
        },
    )
    probes_dir = model_side / "probes"
    sae_name = ctx.sae_ref.label
    sae_side = model_side / "saes" / sae_name
    with (
        contained("absorption"),
        as_saebench_sees_it(model, layer, vocabulary, left_padding=not position.equal_length_prompts),
    ):
        import torch
        from sae_bench.evals.absorption import common, feature_absorption, k_sparse_probing
        from sae_bench.evals.absorption.main import _aggregate_results_df

        torch.set_grad_enabled(True)  # its probes train with autograd (`run_eval` sets this too)
        reseed(seed)
        probe = common.load_or_train_probe(
            model, base_template=cfg.prompt_template, pos_idx=pos, layer=layer, probes_dir=probes_dir, device=ctx.device
        )
        test_activations, test_labels = common.load_probe_data_split_or_train(
            model, cfg.prompt_template, pos, layer=layer, split="test", probes_dir=probes_dir, device="cpu"
        )
        notes.probe_f1 = probe_f1_per_letter(probe, test_activations, test_labels)
        notes.letters_passing = sum(f1 > cfg.min_GT_probe_f1 for f1 in notes.probe_f1.values())
        if notes.letters_passing < cfg.min_feats_for_eval:
            return declined(too_few(notes, cfg), pos)

        reseed(seed)
        k_sparse = k_sparse_probing.run_k_sparse_probing_experiment(
            model=model,
            sae=sae,
            layer=layer,
            sae_name=sae_name,
            max_k_value=cfg.max_k_value,
            prompt_template=cfg.prompt_template,
            prompt_token_pos=pos,
            device=ctx.device,
            experiment_dir=sae_side / "k_sparse_probing",
            probes_dir=probes_dir,
            force=True,
            f1_jump_threshold=cfg.f1_jump_threshold,
            k_sparse_probe_l1_decay=cfg.k_sparse_probe_l1_decay,
            k_sparse_probe_batch_size=cfg.k_sparse_probe_batch_size,
            k_sparse_probe_num_epochs=cfg.k_sparse_probe_num_epochs,
            precalc_k_sparse_probe_sae_acts=cfg.precalc_k_sparse_probe_sae_acts,
            eval_batch_size=cfg.eval_k_sparse_probe_batch_size,
            verbose=False,
        )
        k_sparse.to_json(sae_side / "k_sparse_probing.json", orient="records", indent=4)

        # Its own table decides from here on, as in `run_eval`; it scores the same probe on the same words.
        def passes(letter: str) -> bool:
            return bool(k_sparse[k_sparse["letter"] == letter]["f1_probe"].item() > cfg.min_GT_probe_f1)

        notes.probe_f1 = {str(row["letter"]): float(row["f1_probe"]) for _, row in k_sparse.iterrows()}
        notes.letters_passing = sum(passes(letter) for letter in LETTERS)
        if notes.letters_passing < cfg.min_feats_for_eval:
            return declined(too_few(notes, cfg), pos)

        reseed(seed)
        raw = feature_absorption.run_feature_absortion_experiment(
            model=model,
            sae=sae,
            layer=layer,
            sae_name=sae_name,
            max_k_value=cfg.max_k_value,
            prompt_template=cfg.prompt_template,
            prompt_token_pos=pos,
            device=ctx.device,
            experiment_dir=sae_side / "feature_absorption",
            sparse_probing_experiment_dir=sae_side / "k_sparse_probing",
            probes_dir=probes_dir,
            force=True,
            feature_split_f1_jump_threshold=cfg.f1_jump_threshold,
            batch_size=ctx.batch_size,
        )
        means, details = aggregate(_aggregate_results_df(raw), passes)
        output = build_output(saebench_cfg, means, details, notes)
    return AbsorptionResult.from_output(output, notes=notes)


def too_few(notes: AbsorptionNotes, cfg: AbsorptionConfig) -> str:
    return (
        f"too few first-letter features: {notes.letters_passing} of 26 letters have a ground-truth probe F1 above "
        f"{cfg.min_GT_probe_f1}, {cfg.min_feats_for_eval} needed"
    )


def aggregate(agg: Any, passes: Callable[[str], bool]) -> tuple[dict[str, float], list[Any]]:
    """`run_eval`'s loop over its per-letter table: means, standard deviations and rows of the passing letters."""
    import math
    import statistics

    from sae_bench.evals.absorption.eval_output import AbsorptionResultDetail

    fractions: list[float] = []
    full_rates: list[float] = []
    split_counts: list[float] = []
    details = []
    for _, row in agg.iterrows():
        if not passes(row["letter"]):
            continue
        fractions.append(float(row["mean_absorption_fraction"]))
        full_rates.append(float(row["full_absorption_rate"]))
        split_counts.append(float(row["num_split_feats"]))
        details.append(
            AbsorptionResultDetail(
                first_letter=str(row["letter"]),
                mean_absorption_fraction=float(row["mean_absorption_fraction"]),
                full_absorption_rate=float(row["full_absorption_rate"]),
                num_full_absorption=int(row["num_full_absorption"]),
                num_probe_true_positives=int(row["num_probe_true_positives"]),
                num_split_features=int(row["num_split_feats"]),
            )
        )

    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else math.nan

    def mean(values: list[float]) -> float:
        return statistics.mean(values) if values else math.nan

    return {
        "mean_absorption_fraction_score": mean(fractions),
        "mean_full_absorption_score": mean(full_rates),
        "mean_num_split_features": mean(split_counts),
        "std_dev_absorption_fraction_score": spread(fractions),
        "std_dev_full_absorption_score": spread(full_rates),
        "std_dev_num_split_features": spread(split_counts),
    }, details
