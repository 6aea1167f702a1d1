"""Loading models and tokenizers by local directory or hub id (``from_pretrained``, nothing else).

A hub id is passed to ``from_pretrained`` as is (downloaded by ``transformers`` if not cached);
askd-ref itself never downloads anything, and its tests use local directories only.
"""

from typing import Any

import torch

from askd_ref.engine.paths import check_model_path, looks_like_hub_id

__all__ = [
    "DTYPES",
    "check_model_path",
    "load_causal_lm",
    "load_tokenizer",
    "looks_like_hub_id",
    "resolve_device",
    "torch_dtype",
]

#: ``--dtype`` names → torch dtypes.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """``"fp32"``/``"bf16"``/``"fp16"`` → the torch dtype (``ValueError`` otherwise)."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def resolve_device(device: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``mps``, checked to be available."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return dev


def load_causal_lm(name_or_path: str, *, device: str = "cpu", dtype: str = "fp32") -> Any:
    """``AutoModelForCausalLM.from_pretrained(name_or_path)`` in ``dtype`` on ``device``."""
    from transformers import AutoModelForCausalLM

    td = torch_dtype(dtype)
    check_model_path(name_or_path)
    model: Any
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=td)
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(name_or_path, torch_dtype=td)
    return model.to(str(resolve_device(device)))


def load_tokenizer(name_or_path: str) -> Any:
    """``AutoTokenizer.from_pretrained(name_or_path)``, with a pad token (EOS if it has none)."""
    from transformers import AutoTokenizer

    check_model_path(name_or_path, what="tokenizer")
    tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.eos_token_id is None:
        raise ValueError(f"the tokenizer of {name_or_path!r} has no EOS token; responses need one to end")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
