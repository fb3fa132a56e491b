"""Write a deliberately degraded copy of an SAE, to see `check` fail: `python examples/degrade_sae.py SAE_DIR OUT_DIR`.

Gaussian noise of `--noise` times each decoder row's norm is added to the decoder (seeded), which lowers
reconstruction and everything downstream while keeping the architecture, hook and config of the original.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tsae_evals.saes import load_sae, resolve_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sae", help="sae-lens directory of the SAE to degrade")
    parser.add_argument("out", type=Path, help="where to write the degraded copy")
    parser.add_argument("--noise", type=float, default=0.5, help="noise scale relative to each decoder row's norm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sae = load_sae(resolve_sae(args.sae))
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        noise = torch.randn(sae.W_dec.shape, generator=generator) / sae.W_dec.shape[1] ** 0.5
        sae.W_dec += args.noise * sae.W_dec.norm(dim=1, keepdim=True) * noise
    sae.save_model(str(args.out))
    print(f"wrote {args.out} (decoder noise {args.noise} x row norm)")


if __name__ == "__main__":
    main()
