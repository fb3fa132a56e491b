"""A tiny random HookedTransformer with a real (tiny, trained-in-memory) tokenizer, tiny SAEs and a text corpus."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

HOOK = "blocks.0.hook_resid_post"
D_MODEL = 32
TINY_MODEL_NAME = "tiny-test-model"

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "while",
    "dogs",
    "ran",
    "across",
    "green",
    "fields",
    "under",
    "bright",
    "skies",
    "and",
    "children",
    "laughed",
    "at",
    "birds",
    "that",
    "sang",
    "songs",
    "about",
    "rivers",
    "mountains",
    "forests",
    "cities",
    "markets",
    "trains",
    "boats",
    "letters",
    "numbers",
]


def corpus(n_documents: int = 60, words_per_document: int = 120, seed: int = 0) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    documents = []
    for _ in range(n_documents):
        picks = torch.randint(0, len(WORDS), (words_per_document,), generator=generator)
        documents.append(" ".join(WORDS[i] for i in picks))
    return documents


def write_corpus(path: Path, **kwargs: Any) -> Path:
    path.write_text("\n\n".join(corpus(**kwargs)), encoding="utf-8")
    return path


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<bos>", "<eos>", "<pad>"])
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    # TransformerLens reloads the tokenizer by its name_or_path, so it must live in a directory.
    directory = tempfile.mkdtemp(prefix="tsae-tiny-tokenizer-")
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def tiny_model(seed: int = 0, device: str = "cpu", n_ctx: int = 64) -> Any:
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=D_MODEL,
        n_heads=2,
        d_head=16,
        d_mlp=64,
        n_ctx=n_ctx,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        model_name=TINY_MODEL_NAME,
        seed=seed,
        device=device,  # without it TransformerLens picks CUDA whenever it sees one
    )
    return HookedSAETransformer(cfg, tokenizer=tokenizer).eval()


def tiny_sae(d_sae: int = 64, seed: int = 0, hook_name: str = HOOK, d_in: int = D_MODEL) -> Any:
    """A StandardSAE with random unit-norm decoder rows and encoder = decoder^T: sparse-ish and non-degenerate."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    generator = torch.Generator().manual_seed(seed)
    cfg = StandardSAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        metadata=SAEMetadata(hook_name=hook_name, model_name=TINY_MODEL_NAME, context_size=32, prepend_bos=True),
    )
    sae = StandardSAE(cfg)
    decoder = torch.randn(d_sae, d_in, generator=generator)
    decoder /= decoder.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        sae.W_dec.copy_(decoder)
        sae.W_enc.copy_(decoder.T)
        sae.b_enc.fill_(-0.5)
        sae.b_dec.zero_()
    return sae.eval()


def save_sae(sae: Any, path: Path) -> Path:
    sae.save_model(str(path))
    return path


def two_tiny_saes_request(
    root: Path,
    eval_names: str,
    config_overrides: list[str],
    device: str = "cpu",
    corpus_kwargs: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """A `run` request for two saved tiny SAEs (seeds 0 and 1) on a tiny corpus, everything it writes under `root`;
    8 windows of 32 tokens unless `fields` say otherwise."""
    from tsae_evals.runner import RunRequest

    saes = [str(save_sae(tiny_sae(seed=seed), root / f"sae{seed}")) for seed in (0, 1)]
    return RunRequest(
        sae_specs=saes,
        eval_names=eval_names,
        dataset=str(write_corpus(root / "corpus.txt", **(corpus_kwargs or {}))),
        results_dir=root / "results",
        artifacts_dir=root / "artifacts",
        device=device,
        config_overrides=config_overrides,
        **{"n_windows": 8, "context_size": 32, **fields},
    )


def tiny_model_loader(name: str, device: str) -> Any:
    """A `model_loader(name, device)` that processes other than the test's (Ray workers) can import and call."""
    return tiny_model(device=device)


def sweep_recipe(tmp_path: Path, corpus: Path, **overrides: Any) -> Path:
    """A two-variant sweep recipe on the tiny model (a control and a consistency grid), written to tmp_path."""
    import yaml

    recipe = {
        "name": "tiny",
        "model": TINY_MODEL_NAME,
        "layer": 0,
        "dataset": str(corpus),
        "seeds": [0, 1],
        "train": {"tokens": 600, "expansion": 2, "batch_size_tokens": 124, "context_size": 32},
        "control": "control",
        "variants": [
            {"name": "control", "arch": "control_relu"},
            {"name": "consistency", "arch": "tsae_temporal_consistency", "grid": {"window_size": [2, 3]}},
        ],
        "evals": ["temporal_stability"],
        "run": {"n_windows": 8, "batch_size": 4, "allow_degenerate": True},
        "metrics": ["temporal_stability.jaccard", "temporal_stability.jaccard_excess"],
    }
    recipe.update(overrides)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def eval_context(model: Any, sae: Any, context_size: int, hook: str = HOOK) -> Any:
    """An EvalContext on `model` whose run windows only set the context size and BOS (for evals that bring their
    own text: the probes, the topic-unlearning stand-in)."""
    from tsae_evals.context import EvalContext
    from tsae_evals.data import TokenWindows
    from tsae_evals.saes import SAERef

    windows = TokenWindows(torch.zeros(1, context_size, dtype=torch.long), True, "unused", 0)
    return EvalContext(
        model=model,
        sae=sae.to(model.cfg.device),
        sae_ref=SAERef("test", None, "local", "test"),
        hook_name=hook,
        windows=windows,
        seed=0,
        device=str(model.cfg.device),
        batch_size=8,
    )


def word_level_tokenizer(words: list[str]) -> Any:
    """A fast tokenizer with one token per whitespace-separated word of `words` (plus <unk>, <bos>, <pad>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocabulary = ["<unk>", "<bos>", "<pad>", *words]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(vocabulary)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")
    directory = tempfile.mkdtemp(prefix="tsae-word-tokenizer-")
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


PLANT_HOOK = "blocks.0.hook_resid_pre"
"""Where `planted_direction` puts its signal: token + position embedding, before any layer."""


def planted_direction(tokenizer: Any, marked_words: list[str], model_name: str) -> tuple[Any, Any]:
    """A one-layer model whose residual at PLANT_HOOK is orthogonal to a unit direction u except for `+2u` exactly
    on `marked_words`, and an SAE whose latent 0 = relu(x.u - 1) (1 on those words, 0 elsewhere; the other latents
    never fire)."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=D_MODEL, n_heads=2, d_head=16, d_mlp=64, n_ctx=16, d_vocab=len(tokenizer),
        act_fn="gelu", normalization_type="LN", model_name=model_name, seed=0, device="cpu",
    )  # fmt: skip
    model = HookedSAETransformer(cfg, tokenizer=tokenizer).eval()
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(D_MODEL, generator=generator)
    u /= u.norm()
    embed = torch.randn(len(tokenizer), D_MODEL, generator=generator)
    embed -= (embed @ u)[:, None] * u  # nothing along u ...
    for word in marked_words:
        embed[tokenizer.convert_tokens_to_ids(word)] += 2.0 * u  # ... but the marked words
    with torch.no_grad():
        model.W_E.copy_(embed)
        model.W_pos.sub_((model.W_pos @ u)[:, None] * u)
    sae = tiny_sae(d_sae=64, hook_name=PLANT_HOOK)
    with torch.no_grad():
        sae.W_enc[:, 0] = u
        sae.W_dec[0] = u
        sae.b_enc.fill_(-100.0)
        sae.b_enc[0] = -1.0
    return model, sae


def write_result(
    results_dir: Path,
    eval_name: str,
    sae_id: str,
    metrics: dict[str, dict[str, float]],
    declared: dict[str, Any],
    *,
    architecture: str = "relu",
    sae_cfg: dict[str, Any] | None = None,
    eval_version: int = 1,
    config_hash: str = "cfg0",
    model: str = "tiny-test-model",
    seed: int = 0,
    weights_hash: str | None = None,
    l0: float = 10.0,
    explained_variance: float = 0.9,
    written_ms: int = 1_764_000_000_000,
) -> Path:
    """A result record as the runner writes it, with hand-chosen metrics; `declared` maps `category.metric` to a
    MetricInfo or to (label, higher_is_better, headline). Returns the file's path under `results_dir`."""
    from tsae_evals.preflight import PreflightReport
    from tsae_evals.results import EvalRecord, MetricInfo, Provenance, result_path, write_record

    provenance = Provenance(
        eval_name=eval_name,
        eval_version=eval_version,
        config_hash=config_hash,
        sae_weights_hash=weights_hash or f"w-{sae_id}",
        git_revision=None,
        git_dirty=None,
        model=model,
        hook_name=HOOK,
        dataset="corpus.txt",
        n_windows=8,
        context_size=16,
        prepend_bos=True,
        seed=seed,
        device="cpu",
        package_versions={},
        wall_time_s=1.0,
        preflight=PreflightReport(
            status="pass", problems=[], warnings=[], probe_tokens=100, mean_l0=l0, explained_variance=explained_variance
        ),
    )
    record = EvalRecord(
        eval_type_id=eval_name,
        eval_config={"n": 1},
        eval_id=f"{eval_name}-{sae_id}",
        datetime_epoch_millis=written_ms,
        eval_result_metrics=metrics,
        sae_lens_id=sae_id,
        sae_lens_release_id="local",
        sae_cfg_dict=sae_cfg if sae_cfg is not None else {"architecture": architecture},
        metric_info={
            key: info
            if isinstance(info, MetricInfo)
            else MetricInfo(label=info[0], higher_is_better=info[1], headline=info[2])
            for key, info in declared.items()
        },
        provenance=provenance,
    )
    path = result_path(results_dir, eval_name, "local", sae_id)
    write_record(path, record)
    return path
