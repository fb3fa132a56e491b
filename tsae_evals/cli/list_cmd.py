"""`list`: registered evals (and, with --archs, trainable architectures) with one-line descriptions."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "list", help="list registered evals and architectures", description="List registered evals."
    )
    parser.add_argument("--configs", action="store_true", help="also show each eval's config fields and defaults")
    parser.add_argument(
        "--archs", action="store_true", help="list `train --arch` architectures and their --set options"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.archs:
        return _list_architectures()
    from tsae_evals.registry import all_evals

    specs = all_evals()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        group = f" [{spec.group}]" if spec.group else ""
        print(f"{spec.name:<{width}} v{spec.version}{group:<11}  {spec.description}")
        if args.configs:
            for name, field in spec.config_cls.model_fields.items():
                print(f"    {spec.name}.{name} = {field.default!r}  {field.description or ''}")
    return 0


def _list_architectures() -> int:
    from tsae_evals.training import training_architectures

    for name, architecture in sorted(training_architectures().items()):
        print(f"{name:<28} {architecture.description}")
        for option, field in architecture.options_cls.model_fields.items():
            print(f"    --set {option}={field.default!r}  {field.description or ''}")
    return 0
