"""Resolve the ``--model`` argument without ever touching the network, and load it for training."""

from __future__ import annotations

import os
from pathlib import Path

from defib.evidence import weights
from defib.evidence.model_files import check_model_files
from defib.evidence.readers import InputError


def resolve_model(name: str) -> str:
    """A local folder, or a hub name already in the local cache; anything else is a one-line error.

    The hub is never contacted: offline it would hang, then fail,
    and a training command should not depend on it silently.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(f"--model {name}: the folder has no config.json (not a transformers model)")
        why = weights.refusal(path)
        if why:
            raise InputError(f"--model {why}")
        check_model_files(path)  # a damaged file fails now, not after the data check
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise InputError(f"--model {name}: no such model folder")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise InputError(f"--model {name}: not a folder, and not in the local hub cache"
                         + (" (HF_HUB_OFFLINE is set)" if offline else "; download it first or pass a folder")) \
            from None
    from huggingface_hub import try_to_load_from_cache

    if not any(isinstance(try_to_load_from_cache(name, f), str) for f in weights.SAFE_FILES):
        raise InputError(f"--model {name}: no safetensors weights in the local hub cache (defib loads safetensors "
                         "only, since unpickling can run code)")
    return name
