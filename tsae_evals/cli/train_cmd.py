"""`train`: train (or build) an SAE of any registered architecture on the model's activations."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tsae_evals.data.documents import DEFAULT_DATASET
from tsae_evals.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from tsae_evals.training import TrainRequest

EPILOG = """examples:
  python -m tsae_evals train --arch relu --layer 6 --tokens 300000 --out saes/l6-relu
  python -m tsae_evals train --arch topk --k 32 --layer 6 --tokens 300000 --out saes/l6-topk
  python -m tsae_evals train --arch tsae_hierarchical --set beta2=10 --layer 6 --tokens 300000 --out saes/l6-hier
  python -m tsae_evals train --arch tsae_temporal_lstm --set init_from=saes/l6-relu --layer 6 --tokens 200000 \
      --out saes/l6-lstm
  python -m tsae_evals train --arch random --set match=saes/l6-relu --layer 6 --tokens 20000 --out saes/l6-random
architectures and their --set options: python -m tsae_evals list --archs
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train an SAE",
        description=(
            "Train an SAE on blocks.LAYER.hook_resid_post (sae-lens's trainer for relu/topk/batchtopk, the shared "
            "phased loop for tsae_ architectures); saves a sae-lens directory."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_arguments(parser, arch_help="architecture id (python -m tsae_evals list --archs)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tsae_evals.training import train

    out = train(training_request(args))
    print(f"saved SAE to {out}")
    return 0


def training_request(args: argparse.Namespace) -> TrainRequest:
    """A TrainRequest from the flags `add_training_arguments` declared."""
    from tsae_evals.training import TrainRequest

    return TrainRequest(
        arch=args.arch,
        layer=args.layer,
        tokens=args.tokens,
        out=args.out,
        expansion=args.expansion,
        l1_coefficient=args.l1,
        k=args.k,
        lr=args.lr,
        batch_size_tokens=args.batch_size_tokens,
        context_size=args.context_size,
        model=args.model,
        dataset=args.dataset,
        seed=args.seed,
        device=args.device,
        options=tuple(args.options),
        max_windows_per_document=args.max_windows_per_document,
        activations=args.activations,
        activation_cache_dir=args.activation_cache_dir,
        checkpoints=not args.no_checkpoints,
    )


def add_training_arguments(
    parser: argparse.ArgumentParser, arch_help: str, out_help: str = "output directory (sae-lens format)"
) -> None:
    """The flags of a training request, shared by `train` and `ablate-window`."""
    parser.add_argument("--arch", required=True, help=arch_help)
    parser.add_argument("--layer", type=int, required=True, help="residual-stream layer to read")
    parser.add_argument("--tokens", type=int, required=True, help="training tokens (activations)")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help=out_help,
    )
    parser.add_argument("--expansion", type=int, default=4, help="d_sae / d_model (default 4)")
    parser.add_argument(
        "--l1",
        type=float,
        default=None,
        help="L1 coefficient of ReLU-family SAEs (default: 5 relu, 2 tsae_adaptive_variance, 3 other tsae_ recipes)",
    )
    parser.add_argument("--k", type=int, default=32, help="k for topk/batchtopk (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--batch-size-tokens", type=int, default=2048, help="activations per step (default 2048)")
    parser.add_argument("--context-size", type=int, default=128, help="tokens per window, BOS included")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL} (offline)")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET} (offline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--set", dest="options", action="append", default=[], metavar="NAME=VALUE", help="architecture setting"
    )
    parser.add_argument(
        "--max-windows-per-document",
        type=int,
        default=2,
        help="windows cut from one document at most (default 2; raise it for millions of tokens offline)",
    )
    parser.add_argument(
        "--activations",
        choices=("disk", "stream"),
        default="disk",
        help="tsae_/control architectures: cache activations on disk once and reuse them (default), or stream "
        "them through a refreshed buffer",
    )
    parser.add_argument(
        "--activation-cache-dir",
        type=Path,
        default=None,
        help="root of the activation caches (default $TSAE_EVALS_ACTIVATION_CACHE or <cache>/activations)",
    )
    parser.add_argument(
        "--no-checkpoints", action="store_true", help="do not save phase checkpoints into OUT.checkpoints/"
    )
