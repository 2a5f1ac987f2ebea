"""Which model weights defib loads itself: safetensors only, never a pickle.

A ``pytorch_model.bin`` is a pickle, and unpickling runs whatever code the
file holds; only transformers' current ``weights_only`` default stands
between a malicious file and the user's machine. So every ``from_pretrained``
in defib's own commands (probe, train, predict, the confirmation's
pretrained-weights fix) passes ``use_safetensors=True``, and a folder that
holds only pickled weights is refused first, with a line that says why.
"""

from __future__ import annotations

from pathlib import Path

SAFE_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def has_safetensors(folder: str | Path) -> bool:
    folder = Path(folder)
    return any((folder / name).exists() for name in SAFE_FILES) or any(folder.glob("*.safetensors"))


def refusal(folder: str | Path) -> str | None:
    """Why defib will not load the weights in ``folder`` (pickled weights only, or none), or None if it will."""
    folder = Path(folder)
    if has_safetensors(folder):
        return None
    pickled = next((name for name in PICKLE_FILES if (folder / name).exists()), None)
    if pickled:
        return (f"{folder}: only pickled weights ({pickled}); defib loads safetensors only, since unpickling "
                "can run code (convert it: model.save_pretrained(folder, safe_serialization=True))")
    return f"{folder}: no .safetensors weights"
