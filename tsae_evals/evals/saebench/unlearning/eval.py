"""SAE-Bench's unlearning (`run_eval_single_sae`, `get_metrics_df`, `get_unlearning_scores`) on our model object
and SAE, with the user's copies of its data.

What SAE-Bench reads, and how it gets it here:
- the WMDP-bio forget corpus, opened at the cwd-relative `./sae_bench/evals/unlearning/data/bio-forget-corpus.jsonl`
  (`feature_activation.get_forget_retain_data`): that one path opens `forget_corpus_path` instead, nothing chdirs;
- wikitext-2-raw-v1's test split as retain corpus, and cais/wmdp `wmdp-bio` and cais/mmlu subsets as questions,
  all via `datasets.load_dataset` from the hub: inside this eval its `load_dataset` serves `retain_corpus_path`
  and the files in `data_dir` (an unknown dataset is refused, never fetched);
- question ids and baseline accuracies it derives itself, under its artifacts folder (ours, see below).

What it cannot be handed: a model other than gemma-2-2b-it or gemma-2-9b-it. `calculate_MCQ_metrics` picks the
prompt format and `get_output_probs_abcd` the answer letters by exact model name, with no parameter to pass either,
so answer tokens cannot be derived from another tokenizer without rewriting its metric; `check` refuses those
names up front, and the eval refuses a model of such a name whose tokenizer does not carry those letters and BOS.

What it absorbs:
- `run_eval` loads the model by hub name; its per-SAE loop (seed, `run_eval_single_sae`, score from the saved
  sweep, output assembly) is repeated here on our model object, minus its file write.
- It keys artifacts on model name and SAE name only, and scores every pickle in the SAE's folder; ours keys the
  shared folder on model, data files and sizes, and the SAE's folder on its weights and the sweep, so a changed
  setting never mixes stale sweep points into a score.
- It names the model by `model.cfg.model_name`, which is the bare TransformerLens name only for some `--model`
  spellings (`google/gemma-2-2b-it` or a local folder `.../gemma-2-2b-it` keep their prefix); inside the eval the
  model carries the bare name.
- Its interventions stay on the model when a question set fails; the hooks are always reset here.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from tsae_evals.errors import EvalFailed, Unavailable, UsageError
from tsae_evals.evals.saebench.adapter import artifacts_folder, contained, saebench_output, saebench_sae
from tsae_evals.evals.saebench.unlearning.config import UnlearningConfig
from tsae_evals.evals.saebench.unlearning.result import UnlearningResult
from tsae_evals.registry import register_eval

if TYPE_CHECKING:
    from sae_lens import SAE

    from tsae_evals.context import EvalContext, RunShape

# The names both `calculate_MCQ_metrics` (prompt format) and `get_output_probs_abcd` (answer letters) accept.
SUPPORTED_MODELS = ("gemma-2-2b-it", "gemma-2-9b-it")
# `get_output_probs_abcd`'s answer strings for those models; each must be one token.
ANSWER_STRINGS = ("A", "B", "C", "D", " A", " B", " C", " D")
# `get_forget_retain_data` opens this, relative to the working directory, with its default corpus name.
FORGET_CORPUS_OPENED = "./sae_bench/evals/unlearning/data/bio-forget-corpus.jsonl"
# Where WMDP points for the gated corpora (SAE-Bench's unlearning README links the request form from there).
FORGET_CORPUS_URL = "huggingface.co/datasets/cais/wmdp-corpora"
QUESTION_COLUMNS = ("question", "choices", "answer")


def saebench_model_name(name: str) -> str:
    """The name SAE-Bench would see from TransformerLens: no organisation prefix, no parent folders."""
    return name.rstrip("/").split("/")[-1]


def is_instruction_tuned(model_name: str, cfg: UnlearningConfig) -> bool:
    if cfg.instruction_tuned is not None:
        return cfg.instruction_tuned
    name = saebench_model_name(model_name)
    # SAE-Bench's `run_eval` rule is `"it" in model_name`; "Instruct" (SmolLM2, Qwen, Llama) means the same.
    return "it" in name or "instruct" in name.lower()


def question_files(data_dir: Path, name: str) -> list[Path]:
    """`<name>.jsonl`, `<name>.parquet`, or the hub's shards `<name>/test-*.parquet`; empty if none."""
    for single in (data_dir / f"{name}.jsonl", data_dir / f"{name}.parquet"):
        if single.is_file():
            return [single]
    return sorted((data_dir / name).glob("test-*.parquet"))


def check(shape: RunShape, cfg: UnlearningConfig) -> None:
    """Refuse before any model loads, naming everything missing at once: a model SAE-Bench's unlearning can
    prompt (instruction-tuned, with its hard-coded answer tokens), and each of its data files."""
    names = cfg.dataset_names
    if "wmdp-bio" not in names or set(names) == {"wmdp-bio"} or "loss_added" in names:
        raise UsageError(
            f"unlearning.dataset_names={names} must hold wmdp-bio (the knowledge to unlearn) and at least one MMLU "
            "subset (the knowledge to keep), and not loss_added (SAE-Bench does not support it)",
            'e.g. --config \'unlearning.dataset_names=["wmdp-bio","high_school_us_history"]\'',
        )
    missing: list[str] = []
    fixes: list[str] = []
    model = shape.model_name
    if not is_instruction_tuned(model, cfg):
        if cfg.instruction_tuned is False:
            missing.append(f"an instruction-tuned model (unlearning.instruction_tuned=false for {model!r})")
            fixes.append("drop unlearning.instruction_tuned=false if the model is instruction-tuned")
        else:
            missing.append(f"an instruction-tuned model ({model!r} has neither 'it' nor 'instruct' in its name)")
    if saebench_model_name(model) not in SUPPORTED_MODELS:
        missing.append(
            f"answer tokens and a prompt format for {model!r} (SAE-Bench 0.6.0 hard-codes both for "
            f"{' and '.join(SUPPORTED_MODELS)} only, by model name)"
        )
        fixes.append(f"run it with --model {' or '.join(SUPPORTED_MODELS)}")

    def absent(path: Path | None, field: str, what: str, fix: str) -> None:
        if path is None:
            missing.append(f"{what} (unlearning.{field} is unset)")
        elif not path.is_file():
            missing.append(f"{what} (unlearning.{field}={path} is not a file)")
        else:
            return
        fixes.append(f"--config unlearning.{field}=FILE ({fix})")

    absent(
        cfg.forget_corpus_path,
        "forget_corpus_path",
        "the WMDP-bio forget corpus",
        f"bio-forget-corpus.jsonl, gated: request it via {FORGET_CORPUS_URL}",
    )
    absent(
        cfg.retain_corpus_path,
        "retain_corpus_path",
        "the retain corpus, wikitext-2-raw-v1's test split",
        "a .jsonl or .parquet with a text column, e.g. wikitext-2-raw-v1/test-00000-of-00001.parquet from the hub",
    )
    if cfg.data_dir is None:
        lacking, where = list(names), "unlearning.data_dir is unset"
    else:
        lacking = [name for name in names if not question_files(cfg.data_dir, name)]
        where = f"not in unlearning.data_dir={cfg.data_dir}"
    if lacking:
        missing.append(f"question files for {', '.join(lacking)} ({where})")
        fixes.append(
            "--config unlearning.data_dir=DIR holding <name>.jsonl, <name>.parquet or <name>/test-*.parquet per "
            "dataset name, with question, choices and answer columns (the test splits of cais/wmdp and cais/mmlu)"
        )
    if missing:
        raise Unavailable("unlearning is missing " + "; ".join(missing), "; ".join(fixes))


def check_model(model: Any, cfg: UnlearningConfig) -> None:
    """What only the loaded model shows: SAE-Bench's answer letters and Gemma prompt must tokenize as it assumes
    (one token per letter, `<bos>` as BOS, padding distinct from BOS), and its sparsity sequences must fit."""
    tokenizer = model.tokenizer
    name = str(model.cfg.model_name)
    if tokenizer is None:
        raise UsageError(f"model {name!r} has no tokenizer", "load the model with its tokenizer")
    problems = []
    letters = [model.to_tokens(text, prepend_bos=False)[0].tolist() for text in ANSWER_STRINGS]
    singles = [ids[0] for ids in letters if len(ids) == 1]
    if len(singles) != len(ANSWER_STRINGS) or len(set(singles[:4])) != 4 or len(set(singles[4:])) != 4:
        problems.append("one distinct token for each of the answer strings A-D and ' A'-' D'")
    if tokenizer.bos_token_id is None or model.to_tokens("<bos>", prepend_bos=False)[0].tolist() != [
        tokenizer.bos_token_id
    ]:
        problems.append("'<bos>' as its BOS token (SAE-Bench's Gemma prompt starts with that text)")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.bos_token_id:
        problems.append("a padding token other than BOS (SAE-Bench counts one BOS per padded prompt)")
    if problems:
        raise UsageError(
            f"unlearning is missing answer tokens for the tokenizer of {name!r}: it lacks {'; '.join(problems)}",
            f"run it on {' or '.join(SUPPORTED_MODELS)} with its own tokenizer",
        )
    if cfg.seq_len > model.cfg.n_ctx:
        raise UsageError(
            f"unlearning.seq_len={cfg.seq_len} exceeds the context of {name!r} ({model.cfg.n_ctx} tokens)",
            f"set --config unlearning.seq_len={model.cfg.n_ctx} or lower",
        )


def read_rows(files: list[Path], columns: tuple[str, ...], what: str) -> Any:
    """A `.jsonl` or `.parquet` file (or shards) as the in-memory `datasets.Dataset` `load_dataset` would give."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for file in files:
        if file.suffix == ".parquet":
            tables.append(pq.read_table(file))
        else:
            lines = file.read_text(encoding="utf-8").splitlines()
            tables.append(pa.Table.from_pylist([json.loads(line) for line in lines if line.strip()]))
    table = pa.concat_tables(tables)
    lacking = [column for column in columns if column not in table.column_names]
    if lacking:
        raise UsageError(
            f"{what} {files[0]} has no {', '.join(lacking)} column", f"give it the columns {', '.join(columns)}"
        )
    return datasets.Dataset.from_list(table.select(list(columns)).to_pylist())


@contextlib.contextmanager
def user_data(cfg: UnlearningConfig) -> Iterator[None]:
    """SAE-Bench's corpus and question reads served from the user's files; anything else it asks for is refused."""
    from sae_bench.evals.unlearning.utils import feature_activation, metrics

    assert cfg.forget_corpus_path and cfg.retain_corpus_path and cfg.data_dir  # `check` ran
    forget, retain, data_dir = cfg.forget_corpus_path, cfg.retain_corpus_path, cfg.data_dir
    loaded: dict[tuple[str, str | None], Any] = {}

    def load_dataset(path: str, name: str | None = None, split: str | None = None, **kwargs: Any) -> Any:
        key = (path, name)
        if key not in loaded:
            if key == ("wikitext", "wikitext-2-raw-v1") and split == "test":
                loaded[key] = read_rows([retain], ("text",), "unlearning.retain_corpus_path")
            elif path in ("cais/wmdp", "cais/mmlu") and name is not None and split == "test":
                files = question_files(data_dir, name)
                if not files:
                    raise UsageError(
                        f"SAE-Bench's unlearning asked for questions {name!r}, not in unlearning.data_dir={data_dir}",
                        f"add {name}.jsonl or {name}.parquet there",
                    )
                loaded[key] = read_rows(files, QUESTION_COLUMNS, "question file")
            else:
                raise UsageError(
                    f"SAE-Bench's unlearning asked for dataset {path}/{name} ({split}), which has no local copy",
                    "use its default datasets",
                )
        return loaded[key]

    def opener(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str) and os.path.normpath(file) == os.path.normpath(FORGET_CORPUS_OPENED):
            return builtins.open(forget, encoding="utf-8")
        return builtins.open(file, *args, **kwargs)

    with (
        mock.patch.object(feature_activation, "load_dataset", load_dataset),
        mock.patch.object(metrics, "load_dataset", load_dataset),
        # A module-level `open` shadows the builtin for that module's code only.
        mock.patch.object(feature_activation, "open", opener, create=True),
    ):
        yield


@contextlib.contextmanager
def named_for_saebench(model: Any) -> Iterator[None]:
    """The model carries the bare name SAE-Bench dispatches on, and no hook SAE-Bench left behind, afterwards."""
    name = model.cfg.model_name
    model.cfg.model_name = saebench_model_name(str(name))
    try:
        yield
    finally:
        model.reset_hooks()
        model.cfg.model_name = name


def file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def data_settings(cfg: UnlearningConfig, saebench_cfg: Any) -> dict[str, Any]:
    """Everything that decides SAE-Bench's model-side artifacts (question ids, baseline accuracies, the corpus
    draw): the data files themselves included, as SAE-Bench keys on the model name only."""
    assert cfg.forget_corpus_path and cfg.retain_corpus_path and cfg.data_dir
    data_dir = cfg.data_dir
    return {
        **{key: getattr(saebench_cfg, key) for key in ("dataset_names", "dataset_size", "seq_len", "random_seed")},
        "forget_corpus": file_fingerprint(cfg.forget_corpus_path),
        "retain_corpus": file_fingerprint(cfg.retain_corpus_path),
        "questions": {
            name: [file_fingerprint(file) for file in question_files(data_dir, name)] for name in cfg.dataset_names
        },
    }


def sae_folder_name(ctx: EvalContext, saebench_cfg: Any) -> str:
    """SAE-Bench's per-SAE folder (sparsities, one pickle per sweep point, all of which it scores): keyed on the
    weights and on every setting of the sweep, so no other SAE's or sweep's points are ever read."""
    digest = hashlib.sha256()
    for key, tensor in sorted(ctx.sae.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    sweep = {
        key: getattr(saebench_cfg, key)
        for key in ("retain_thresholds", "n_features_list", "multipliers", "target_metric", "intervention_method")
    }
    digest.update(json.dumps(sweep, sort_keys=True).encode())
    return f"{ctx.sae_ref.label}-{digest.hexdigest()[:12]}"


def saebench_config(ctx: EvalContext, cfg: UnlearningConfig) -> Any:
    from sae_bench.evals.unlearning.eval_config import UnlearningEvalConfig

    return UnlearningEvalConfig(
        random_seed=ctx.seed if cfg.random_seed is None else cfg.random_seed,
        dataset_names=list(cfg.dataset_names),
        retain_thresholds=list(cfg.retain_thresholds),
        n_features_list=list(cfg.n_features_list),
        multipliers=list(cfg.multipliers),
        dataset_size=cfg.dataset_size,
        seq_len=cfg.seq_len,
        target_metric=cfg.target_metric,
        model_name=saebench_model_name(str(ctx.model.cfg.model_name)),
        llm_batch_size=llm_batch_size(ctx, cfg),
        llm_dtype=str(ctx.model.cfg.dtype).removeprefix("torch."),
    )


def llm_batch_size(ctx: EvalContext, cfg: UnlearningConfig) -> int:
    """The configured size, else what SAE-Bench's `main` picks for the model (its 128-token table / 8, as its
    sequences are 1024 long), else the run's --batch-size."""
    from sae_bench.sae_bench_utils.activation_collection import LLM_NAME_TO_BATCH_SIZE

    if cfg.llm_batch_size is not None:
        return cfg.llm_batch_size
    name = saebench_model_name(str(ctx.model.cfg.model_name))
    return max(1, LLM_NAME_TO_BATCH_SIZE[name] // 8) if name in LLM_NAME_TO_BATCH_SIZE else ctx.batch_size


def in_model_dtype(sae: SAE[Any], model: Any) -> SAE[Any]:
    """`run_eval` casts the SAE to the model's dtype (its clamp hook adds the SAE's output to the residual); a
    copy, so the SAE other evals see keeps its own."""
    import copy

    dtype = model.cfg.dtype
    return sae if sae.dtype == dtype else copy.deepcopy(sae).to(dtype=dtype)


def empty_question_sets(folder: Path, cfg: Any) -> list[str]:
    """Datasets whose selected question ids (SAE-Bench's `save_target_question_ids`) came out empty."""
    empty = []
    for name in cfg.dataset_names:
        full = name if name == "wmdp-bio" else f"mmlu-{name.replace('_', '-')}"
        ids = folder / "data" / "question_ids" / "all" / f"{full}_{cfg.target_metric}.csv"
        if ids.is_file() and not ids.read_text().strip():
            empty.append(name)
    return empty


@register_eval("unlearning", version=1, config=UnlearningConfig, group="saebench", check=check)
def unlearning(ctx: EvalContext, cfg: UnlearningConfig) -> UnlearningResult:
    """SAE-Bench unlearning: clamp latents that fire on WMDP-bio text; WMDP-bio accuracy lost while MMLU holds."""
    import numpy as np
    import torch
    from sae_bench.evals.unlearning import main as saebench_unlearning
    from sae_bench.evals.unlearning.eval_output import (
        UnlearningEvalOutput,
        UnlearningMetricCategories,
        UnlearningMetrics,
    )
    from sae_bench.evals.unlearning.utils.eval import run_eval_single_sae

    check(ctx.run_shape, cfg)
    check_model(ctx.model, cfg)
    saebench_cfg = saebench_config(ctx, cfg)
    folder = artifacts_folder(ctx, "unlearning", data_settings(cfg, saebench_cfg))
    sae_name = sae_folder_name(ctx, saebench_cfg)
    sae = in_model_dtype(saebench_sae(ctx), ctx.model)
    with contained("unlearning"), user_data(cfg), named_for_saebench(ctx.model):
        # `run_eval` seeds these two before its loop; numpy too here, so its train/test id split repeats.
        random.seed(saebench_cfg.random_seed)
        torch.manual_seed(saebench_cfg.random_seed)
        np.random.seed(saebench_cfg.random_seed)
        try:
            sweep = run_eval_single_sae(ctx.model, sae, saebench_cfg, str(folder), sae_name, False)
        except Exception as exc:
            empty = empty_question_sets(folder, saebench_cfg)
            if empty:
                raise EvalFailed(
                    f"SAE-Bench unlearning found no {', '.join(empty)} question the model answers right under all "
                    f"24 choice orders ({saebench_cfg.target_metric!r}), and cannot score an empty set"
                ) from exc
            raise
        # The rest of `run_eval`'s loop: the score over every saved sweep point, then its output model.
        metrics_df = saebench_unlearning.get_metrics_df(os.path.join(folder, sae_name, "results/metrics"))
        score = saebench_unlearning.get_unlearning_scores(metrics_df)
        output = saebench_output(
            UnlearningEvalOutput,
            eval_config=saebench_cfg,
            metrics=UnlearningMetricCategories(unlearning=UnlearningMetrics(unlearning_score=float(score))),
            details=[],
            # `run_eval` records nothing else; the sweep behind the score and the data it ran on are worth keeping.
            unstructured={
                "selected_questions": {name: len(values["is_correct"]) for name, values in sweep[0].items()},
                # Plain floats and ints, NaN kept (a JSON round trip would make it null).
                "sweep": [
                    {str(key): value.item() if hasattr(value, "item") else value for key, value in row.items()}
                    for row in metrics_df.to_dict("records")
                ],
                "data": {
                    "forget_corpus_path": str(cfg.forget_corpus_path),
                    "retain_corpus_path": str(cfg.retain_corpus_path),
                    "data_dir": str(cfg.data_dir),
                },
            },
        )
    return UnlearningResult.from_output(output)
