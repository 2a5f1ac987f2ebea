"""What defib wraps in transformers, once it is imported: tokenizer calls, ``from_pretrained``, ``TrainingArguments``;
and in peft, the Hugging Face adapter library, the configs (``LoraConfig``).

Applied through :class:`~defib.evidence.hooks.patching.PostImport`, so a
script that never imports transformers never loads it because of defib.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any

from defib.evidence.callsite import is_user_file, where_here
from defib.evidence.hooks.patching import Installed, PostImport, after_init
from defib.evidence.watch import Watcher


def transformers_finder(inst: Installed, w: Watcher) -> PostImport:
    """The post-import callbacks that patch transformers' modules as they load."""
    return PostImport({
        "transformers.tokenization_utils_base": functools.partial(_patch_tokenizers, inst, w),
        "transformers.modeling_utils": functools.partial(_patch_from_pretrained, inst, w),
        "transformers.training_args": functools.partial(_patch_training_args, inst, w),
        "peft.config": functools.partial(_patch_peft_config, inst),
    })


def _patch_tokenizers(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "PreTrainedTokenizerBase", None)
    if cls is None:
        return

    def call(original):
        @functools.wraps(original)
        def run(self, text=None, *args, **kwargs):
            if w.fix is not None:
                kwargs = w.apply_fix("tokenizer_kwargs", kwargs, default=kwargs)
            out = original(self, text, *args, **kwargs)
            named = dict(kwargs)
            if args and "text_pair" not in named:
                named["text_pair"] = args[0]
            w.data.tokenizer_called(self, text, named, out)
            return out
        return run

    inst.patch(cls, "__call__", call)
    _patch_tokenizer_making(inst, cls)
    _patch_tokenizer_cap(inst, cls)


def _patch_tokenizer_cap(inst: Installed, cls: Any) -> None:
    """Remember the user's line that last set a tokenizer's ``model_max_length``: the cap a call with truncation
    and no ``max_length`` cuts at. Set at construction (``from_pretrained(..., model_max_length=)``), or later
    through a library (sentence-transformers' ``model.max_seq_length = 8`` writes it to the tokenizer)."""

    def set_attr(original):
        @functools.wraps(original)
        def run(self, key, value):
            original(self, key, value)
            if key == "model_max_length":
                try:
                    object.__setattr__(self, "_defib_cap_where", where_here(skip=2))
                except Exception:  # an object that refuses attributes just goes unmarked
                    pass
        return run

    inst.patch(cls, "__setattr__", set_attr)


def _patch_tokenizer_making(inst: Installed, cls: Any) -> None:
    """Remember the user's line that made each tokenizer: ``AutoTokenizer.from_pretrained(...)``,
    ``base.train_new_from_iterator(...)``, a constructor. Every way ends in the base class's ``__init__``, and a
    tokenizer that does not belong to the model is fixed at that line."""

    inst.patch(cls, "__init__", after_init(_mark_made))


def _patch_from_pretrained(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "PreTrainedModel", None)
    if cls is None:
        return
    original = cls.__dict__["from_pretrained"].__func__

    def make(_):
        @functools.wraps(original)
        def from_pretrained(klass, *args, **kwargs):
            model = original(klass, *args, **kwargs)
            w.evaluation.loaded(model)
            try:
                model._defib_pretrained = True
            except Exception:  # a model that refuses attributes just goes unmarked
                pass
            return model
        return classmethod(from_pretrained)

    inst.patches.append((cls, "from_pretrained", cls.__dict__["from_pretrained"]))
    setattr(cls, "from_pretrained", make(None))
    if "post_init" in cls.__dict__:  # every HF model calls post_init at the end of __init__
        def post_init(original):
            @functools.wraps(original)
            def run(self, *args, **kwargs):
                out = original(self, *args, **kwargs)
                w.model.model_built(self)
                return out
            return run
        inst.patch(cls, "post_init", post_init)


def _patch_training_args(inst: Installed, w: Watcher, module: Any) -> None:
    """Remember where the user wrote ``TrainingArguments(learning_rate=...)``, or a subclass's.

    Patched at ``__post_init__``, not ``__init__``: a dataclass subclass (``Seq2SeqTrainingArguments``,
    sentence-transformers' ``SentenceTransformerTrainingArguments``, a user's own) gets a generated
    ``__init__`` that never calls the base one, but it calls ``__post_init__``, and theirs call the base's.
    """
    cls = getattr(module, "TrainingArguments", None)
    if cls is None or "__post_init__" not in cls.__dict__:
        return

    def post_init(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            try:
                if w.optim.training_args_where is not None and not _made_by_user():
                    return out  # a library's own arguments (sentence-transformers builds defaults to compare with)
                w.optim.training_args_where = where_here(keyword="learning_rate", skip=2,
                                                         value=getattr(self, "learning_rate", None))
                w.optim.training_args_plan = _planned(self)
            except Exception as exc:
                w.record_internal_error("TrainingArguments", exc)
            return out
        return run

    inst.patch(cls, "__post_init__", post_init)


def _made_by_user() -> bool:
    """The arguments being initialised were constructed by the user's code, not by a library's.

    Looked up from the patched ``__post_init__``: past the constructor frames (a dataclass's generated
    ``__init__``, subclasses' ``__post_init__``), the frame that called the constructor.
    """
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith("<")
                                 or frame.f_code.co_name in ("__init__", "__post_init__")):
        frame = frame.f_back
    return frame is not None and is_user_file(frame.f_code.co_filename)


def _planned(args: Any) -> tuple[int | None, int | None, Any]:
    """(max_steps, warmup in steps, where the warmup was set) from TrainingArguments, each None when unstated.

    ``max_steps`` <= 0 means "from the epochs", which only the Trainer resolves (its schedule then states the
    length); a ``warmup_steps`` under 1 (or ``warmup_ratio``) is a share of that length, likewise. A warmup
    argument counts as stated when it differs from its field's default (the keywords themselves are not
    seen from ``__post_init__``).
    """
    max_steps = getattr(args, "max_steps", -1)
    warmup = getattr(args, "warmup_steps", 0)
    defaults = {f.name: f.default for f in dataclasses.fields(args)}
    keyword = next((k for k in ("warmup_steps", "warmup_ratio")
                    if k in defaults and getattr(args, k, None) != defaults[k]), None)
    # the search starts at the patched __post_init__ and stops at the first frame outside the libraries
    where = where_here(keyword=keyword, skip=3, value=getattr(args, keyword)) if keyword else None
    return (int(max_steps) if isinstance(max_steps, int) and max_steps > 0 else None,
            int(warmup) if isinstance(warmup, (int, float)) and warmup >= 1 else None, where)


def _patch_peft_config(inst: Installed, module: Any) -> None:
    """Remember the user's line that built each PEFT config (``LoraConfig(...)``): PEFT freezes the base model and
    decides what trains there (``task_type``, ``modules_to_save``, ``target_modules``, ``lora_alpha``)."""
    cls = getattr(module, "PeftConfigMixin", None)
    if cls is None or "__post_init__" not in cls.__dict__:
        return

    inst.patch(cls, "__post_init__", after_init(_mark_made))


def _mark_made(obj: Any) -> None:
    """Note the user's line that made ``obj`` (a tokenizer, a PEFT config): the line a finding about it points at."""
    try:
        obj._defib_where = where_here(skip=2)
    except Exception:  # an object that refuses attributes just goes unmarked
        pass
