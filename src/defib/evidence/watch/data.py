"""Evidence about the data: the DataLoaders, the batches the model saw (padding, masks, duplicates), tokenizer calls.

A batch is read from the outermost model call of a training forward (the
watcher finds its ``input_ids`` and ``attention_mask``); the loader behind it
is the one iterated last before that forward. Targets are the loss part's
(:mod:`defib.evidence.watch.loss`): they are only known at the loss call.
"""

from __future__ import annotations

import statistics
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from defib.evidence import params as P
from defib.evidence.callsite import where_here
from defib.evidence.watch import vocab
from defib.evidence.watch.guard import Part, guarded
from defib.signals.run import DataSignals

MAX_LOADERS = 256  # DataLoaders remembered before the dead ones are dropped
LENGTH_SAMPLE = 512  # rows of truncating tokenizer calls whose uncut length is measured (enough for a median)
# ... at most this many from one call, so the sample spans the run: a library's one-off call on the dataset's first
# rows (sentence-transformers' model card examples) or one preprocessing chunk does not stand for all the data
LENGTH_SAMPLE_PER_CALL = 8
NO_CAP = 10**9  # a tokenizer's model_max_length this large is transformers' "no limit" (VERY_LARGE_INTEGER)
# a tokenizer call's options that only shape a cut or padded output: dropped when a row is tokenized again uncut
_CUT_ONLY = ("text_pair", "max_length", "stride", "return_overflowing_tokens", "pad_to_multiple_of", "truncation",
             "padding", "return_tensors", "verbose")


def _cap(tokenizer: Any, kwargs: dict) -> int | None:
    """The length a tokenizer call cuts its rows at: its ``max_length=``, else (truncation on, no max_length) the
    tokenizer's own ``model_max_length``, which sentence-transformers' ``max_seq_length`` sets; None: no cut."""
    truncation = kwargs.get("truncation")
    if not truncation or truncation == "do_not_truncate":
        return None
    cap = kwargs.get("max_length") or getattr(tokenizer, "model_max_length", None)
    return int(cap) if isinstance(cap, int) and 0 < cap < NO_CAP else None


def find_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """input_ids and attention_mask, by keyword, in a dict, or as the first positionals."""
    # a forward that raised reaches the global hook without its kwargs (torch passes None): the positionals remain
    src: dict = dict(kwargs) if isinstance(kwargs, Mapping) else {}
    if args and isinstance(args[0], Mapping):  # a dict or a tokenizer's BatchEncoding
        src.update(args[0])
    ids = src.get("input_ids")
    mask = src.get("attention_mask")
    if ids is None and args and isinstance(args[0], torch.Tensor) and args[0].ndim == 2 \
            and not args[0].is_floating_point():
        ids = args[0]
        if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].shape == ids.shape:
            mask = args[1]
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
        return None, None
    return ids, mask if isinstance(mask, torch.Tensor) else None


class DataEvidence(Part):
    """The loaders seen (weakly held) and the data's signals."""

    def __init__(self, watcher: Any):
        super().__init__(watcher)
        self._loaders: dict[int, dict[str, Any]] = {}
        self._active_loader: dict | None = None  # the loader iterated last, until a forward shows its use
        self._train_loader: weakref.ref | None = None  # the loader a training forward showed in use last
        self._mask_where: Any = None  # where a finding about the training batches' masks points
        # (input_ids, attention_mask) an encoder inside the user's module received in this forward, and the line
        # in that module that calls it (see encoder_batch)
        self._encoder_inputs: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._mask: torch.Tensor | None = None  # the attention mask of this step's training batch (a reference)
        self._encoder_mask_where: Any = None
        self._tokenizer: weakref.ref | None = None  # the tokenizer called last
        # per embedding row, on the model's device: True where the checkpoint never trained it (see _embedding_seen)
        self._untrained: torch.Tensor | None = None
        self._embedding_checked = False
        self._vocab_checked = False
        # per row measured (see _measure_cut): the share of its text the cap dropped; rows tokenized before any
        # training forward (a whole dataset up front, or a library's one-off calls) apart from rows tokenized
        # during training, which are the rows the model learns from once there are any
        self._text_lost: dict[bool, list[float]] = {False: [], True: []}
        self._training = False  # a training forward has run: tokenizer calls with gradients on feed training

    def signals(self) -> DataSignals:
        if self.w.s.data is None:
            self.w.s.data = DataSignals()
        return self.w.s.data

    @guarded
    def loader_created(self, loader: Any) -> None:
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        inner = getattr(batch_sampler, "sampler", None)
        name = type(inner or sampler).__name__
        shuffled = {"RandomSampler": True, "SequentialSampler": False}.get(name)
        if len(self._loaders) >= MAX_LOADERS:  # a loader built per batch: forget the dead ones
            self._loaders = {k: v for k, v in self._loaders.items() if v["ref"]() is not None}
        rebuilt = self._rebuilt_from(batch_sampler)
        # keyed by id, checked by weakref: a loader used once (iter(DataLoader(...))) dies and its id is reused
        # a collate function of the script's (not torch's default): where it was made, for findings about what it
        # does to the batch (labels padded with a tag: D011)
        custom = not getattr(getattr(loader, "collate_fn", None), "__module__", "torch").startswith("torch")
        self._loaders[id(loader)] = {
            "where": rebuilt["where"] if rebuilt else where_here(keyword="shuffle", skip=4, value=shuffled),
            "collate_where": rebuilt["collate_where"] if rebuilt else
            where_here(keyword="collate_fn", skip=4) if custom else None,
            "sampler": rebuilt["sampler"] if rebuilt else name, "ref": weakref.ref(loader)}

    def _rebuilt_from(self, batch_sampler: Any) -> dict | None:
        """The user's loader whose batches a library's new loader reuses (``accelerator.prepare`` rebuilds the
        DataLoader around the user's batch sampler, or a shard of it): its line is the one to edit, not prepare's."""
        reused = [b for b in (batch_sampler, getattr(batch_sampler, "batch_sampler", None)) if b is not None]
        for info in self._loaders.values():
            old = info["ref"]()
            if old is not None and any(getattr(old, "batch_sampler", None) is b for b in reused):
                return info
        return None

    @guarded
    def loader_iter(self, loader: Any) -> None:
        # only a loader whose batches reach a training forward is the training loader (see _adopt_loader):
        # the Trainer iterates its evaluation loader, in order, with gradients enabled
        info = self._loaders.get(id(loader))
        if info is not None and info["ref"]() is loader and self.w._grad:
            self._active_loader = info

    def evaluation_forward(self) -> None:
        """A forward without gradients or in eval mode: the loader iterated last feeds an evaluation, not training."""
        self._active_loader = None

    def encoder_batch(self, ids: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        """An encoder called inside the user's module during training: the ids and mask it received.

        The outermost call may carry a right mask that the user's forward then drops (or rebuilds) before
        the encoder; the batch check reads the encoder's inputs instead, and a mask finding points at the
        line in the user's forward that calls the encoder. A mask of another shape (a 4-D extended one)
        leaves the outermost call's in charge.
        """
        if ids is None or (mask is not None and mask.shape != ids.shape):
            self._encoder_inputs = None
            return
        self._encoder_inputs = (ids, mask)
        if self._encoder_mask_where is None:
            self._encoder_mask_where = where_here(keyword="attention_mask", skip=3)

    def training_batch(self, ids: torch.Tensor, mask: torch.Tensor | None, model: Any = None) -> None:
        """The outermost model call of a training forward: its loader is the training loader; check the batch.

        The batch's values are read at the watcher's next flush; the line a mask finding points at (the model
        call, the same every step) is found now, from the live stack, once.
        """
        self._adopt_loader()
        self._training = True
        self._mask = mask if isinstance(mask, torch.Tensor) else None  # the step's mask, for token labels
        if not self._embedding_checked and model is not None:
            self._embedding_seen(model)
        inner, self._encoder_inputs = self._encoder_inputs, None
        if inner is not None and inner[0].shape == ids.shape:
            # the mask the call gave was dropped or replaced on the way to the encoder: that line is the one
            if mask is not None and inner[1] is not mask and self._mask_where is None:
                self._mask_where = self._encoder_mask_where
            ids, mask = inner
        if self._mask_where is None:
            self._mask_where = where_here(keyword="attention_mask", skip=3)
        self.w.later(self._check_batch, ids.detach().clone(),
                     mask.detach().clone() if isinstance(mask, torch.Tensor) else None)

    def token_labels(self, target: torch.Tensor, ignore_index: int) -> None:
        """A token-level training loss's targets on a sampled step: read against this step's attention mask later.

        Labels at padding positions (a collate that pads the labels with a tag, not the ignore index) are
        supervised like real tokens: in NER, as many O tags again as there is padding.
        """
        # a model's own loss (``labels=``) runs inside its forward: the encoder's inputs of this forward are known,
        # the outermost call's are not yet (they would be the previous step's)
        mask = self._encoder_inputs[1] if self._encoder_inputs is not None else self._mask
        if isinstance(mask, torch.Tensor) and target.numel() == mask.numel():
            self.w.later(self._count_labelled_padding, target.detach().clone().reshape(mask.shape),
                         mask.detach().clone(), ignore_index)

    def _count_labelled_padding(self, y: torch.Tensor, mask: torch.Tensor, ignore_index: int) -> None:
        d = self.signals()
        labelled = y != ignore_index
        d.labelled_tokens += int(labelled.sum())
        d.labelled_padding += int((labelled & (mask == 0)).sum())
        if y.ndim == 2:
            _count_label_tails(d, labelled, mask != 0)

    def _adopt_loader(self) -> None:
        """A training forward ran: the loader iterated last is the one that feeds training."""
        info = self._active_loader
        if info is not None:
            self._train_loader = info["ref"]
            d = self.signals()
            d.loader_where, d.sampler, d.collate_where = info["where"], info["sampler"], info["collate_where"]
            d.shuffle = info["sampler"] not in ("SequentialSampler",)
            self._active_loader = None

    def training_dataset(self) -> Any:
        """The dataset behind the training loader, once a training forward showed which loader that is."""
        loader = self._train_loader() if self._train_loader is not None else None
        return getattr(loader, "dataset", None)

    def _check_batch(self, ids: torch.Tensor, mask: torch.Tensor | None) -> None:
        d = self.signals()
        d.batches += 1
        pad = d.pad_token_id
        if pad is not None:
            is_pad = ids == pad
            # a sequence of pads at the end of a row, not an id that merely equals pad
            has_pad = bool(is_pad[:, -1].any())
            if has_pad:
                d.batches_with_pad += 1
                if mask is None:
                    d.batches_pad_no_mask += 1
                    d.mask_where = d.mask_where or self._mask_where
                else:
                    m = mask.bool() if mask.dtype != torch.bool else mask
                    if m.shape == ids.shape:
                        if bool(m.all()):
                            d.batches_mask_all_ones_with_pad += 1
                            d.mask_where = d.mask_where or self._mask_where
                        elif float((m == is_pad).float().mean()) > 0.9:
                            d.batches_mask_inverted += 1
                            d.mask_where = d.mask_where or self._mask_where
        if ids.shape[0] > 1:
            uniq = torch.unique(ids, dim=0).shape[0]
            share = 1 - uniq / ids.shape[0]
            prev = d.dup_rows_share or 0.0
            d.dup_rows_share = prev + (share - prev) / d.batches
        self._check_tokens(ids, mask)

    @guarded
    def tokenizer_called(self, tokenizer: Any, texts: Any, kwargs: dict, encoding: Any) -> None:
        d = self.signals()
        if d.pad_token_id is None:
            d.pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if d.tokenizer_where is None:
            d.tokenizer_where = where_here(keyword="max_length", skip=4, value=kwargs.get("max_length"))
        if kwargs.get("is_split_into_words") and d.word_split_where is None:
            d.word_split_where = where_here(skip=4)  # words split into pieces here: their tags must follow them
        self._tokenizer_seen(tokenizer)
        ids = encoding.get("input_ids") if hasattr(encoding, "get") else None
        if ids is None or not isinstance(texts, (list, tuple)) or not texts:
            return
        rows = ids.tolist() if hasattr(ids, "tolist") else ids
        if not rows or not isinstance(rows[0], (list, tuple)):
            return
        top = max((max(r) for r in rows if r), default=None)
        if top is not None and (d.tokenizer_max_id is None or top > d.tokenizer_max_id):
            d.tokenizer_max_id = int(top)  # on the host already: survives a device assert in the embedding
        max_len = _cap(tokenizer, kwargs)
        if max_len:
            if d.cap_where is None:  # the keyword's line, else the line that set the tokenizer's own limit
                d.cap_where = (where_here(keyword="max_length", skip=4, value=max_len) if kwargs.get("max_length")
                               else getattr(tokenizer, "_defib_cap_where", None) or d.tokenizer_where)
            d.tokenizer_max_length = max_len
            masks = encoding.get("attention_mask")
            masks = masks.tolist() if hasattr(masks, "tolist") else masks
            if isinstance(masks, list) and len(masks) == len(rows):  # real tokens: the mask's ones, whatever the pad id
                real = [sum(m) for m in masks]
            else:
                pad = d.pad_token_id
                real = [len(r) if pad is None else sum(1 for t in r if t != pad) for r in rows]
            d.rows_at_max_length += sum(1 for n in real if n >= max_len)
            if len(self._text_lost[self._training and self.w._grad]) < LENGTH_SAMPLE:
                self._measure_cut(tokenizer, texts, kwargs, real, max_len)
        pair = kwargs.get("text_pair")
        keys = list(zip(texts, pair)) if isinstance(pair, (list, tuple)) and len(pair) == len(texts) else list(texts)
        d.tokenizer_rows += len(rows)
        d.distinct_texts += len(set(map(str, keys)))
        d.distinct_encodings += len({tuple(r) for r in rows})

    def _measure_cut(self, tokenizer: Any, texts: list | tuple, kwargs: dict, real: list[int], cap: int) -> None:
        """How much of each row's text the cap dropped, for the first rows of truncating calls (LENGTH_SAMPLE in all,
        LENGTH_SAMPLE_PER_CALL from each); the calls made during training are measured apart, and stand for the
        run once there are any (sentence-transformers' model card tokenizes the dataset's first thousand rows
        before training, and STS-B's first rows are its shortest).

        A row shorter than the cap lost nothing; a row at the cap is tokenized again, uncut, by the original
        ``__call__`` (neither this hook nor a ``--confirm`` fix sees it), once. Its text is its tokens past the
        special ones the tokenizer adds, which the cap always keeps.
        """
        d = self.signals()
        lost = self._text_lost[self._training and self.w._grad]
        rows = range(min(LENGTH_SAMPLE - len(lost), LENGTH_SAMPLE_PER_CALL, len(real), len(texts)))
        cut = [i for i in rows if real[i] >= cap]
        pair = kwargs.get("text_pair")
        paired = (isinstance(pair, (list, tuple)) and len(pair) == len(texts)) or \
            (not kwargs.get("is_split_into_words") and isinstance(texts[0], (list, tuple)) and len(texts[0]) == 2)
        full: dict[int, int] = {}
        if cut:
            call = type(tokenizer).__call__
            call = getattr(call, "_defib_original", call)
            uncut = {k: v for k, v in kwargs.items() if k not in _CUT_ONLY}
            if isinstance(pair, (list, tuple)) and len(pair) == len(texts):
                uncut["text_pair"] = [pair[i] for i in cut]
            try:
                ids = call(tokenizer, [texts[i] for i in cut], **uncut, truncation=False, padding=False,
                           return_tensors=None, verbose=False)["input_ids"]
            except Exception:  # inputs this tokenizer only takes with the user's exact options: leave it unmeasured
                lost.extend([0.0] * LENGTH_SAMPLE)
                return
            full = {i: len(r) for i, r in zip(cut, ids)}
        special = tokenizer.num_special_tokens_to_add(pair=paired)
        for i in rows:
            n = full.get(i, real[i])
            lost.append(max(0, n - real[i]) / (n - special) if n > special else 0.0)
        used = self._text_lost[True] or self._text_lost[False]
        d.length_sample_rows = len(used)
        d.text_lost_median = statistics.median(used)

    # ------------------------------------------------------------------ the tokenizer against the checkpoint
    def _tokenizer_seen(self, tokenizer: Any) -> None:
        """The tokenizer in use: its unknown token, where it was loaded, and its vocabulary to compare (once)."""
        if self._tokenizer is not None and self._tokenizer() is tokenizer:
            return
        try:
            self._tokenizer = weakref.ref(tokenizer)
        except TypeError:
            self._tokenizer = None
        d = self.signals()
        unk = getattr(tokenizer, "unk_token_id", None)
        d.unk_token_id = unk if isinstance(unk, int) else None
        d.tokenizer_path = str(getattr(tokenizer, "name_or_path", "") or "") or None
        d.tokenizer_load_where = getattr(tokenizer, "_defib_where", None) or d.tokenizer_load_where
        self._vocab_checked = False  # another tokenizer: compare again

    def _embedding_seen(self, model: Any) -> None:
        """Once, at the first training forward (before a step can move a row): the input embedding's size and which
        of its rows the checkpoint never trained. Rows a resize added past the saved ``vocab_size`` start at their
        init; an all-zero row (other than pad's, which ``padding_idx`` keeps at zero) was never updated. The mask
        stays on the model's device; the batches are checked against it at the next flush."""
        self._embedding_checked = True
        emb = P.input_embedding(model)
        if emb is None:
            return
        d = self.signals()
        weight = emb.weight.detach()  # (V, H)
        d.embedding_rows = int(weight.shape[0])
        folder = vocab.checkpoint_dir(P.find_config(model))
        d.checkpoint_path = folder
        d.checkpoint_vocab = vocab.saved_vocab_size(folder) if folder else None
        untrained = (weight == 0).all(dim=1)  # (V,)
        if d.checkpoint_vocab is not None and d.checkpoint_vocab < d.embedding_rows:
            untrained[d.checkpoint_vocab:] = True
        pad = d.pad_token_id
        if pad is not None and 0 <= pad < d.embedding_rows:
            untrained[pad] = False
        self._untrained = untrained

    def _check_tokens(self, ids: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Count, in one training batch (at a flush), unknown tokens, ids past the embedding table, untrained rows."""
        d = self.signals()
        if mask is not None and mask.shape == ids.shape:
            real = ids[mask.bool()]
        elif d.pad_token_id is not None:
            real = ids[ids != d.pad_token_id]
        else:
            real = ids.reshape(-1)
        if real.numel() == 0:
            return
        d.tokens_seen += int(real.numel())
        top = int(real.max())
        d.max_id = top if d.max_id is None else max(d.max_id, top)
        if d.unk_token_id is not None:
            d.unk_tokens += int((real == d.unk_token_id).sum())
        if d.embedding_rows is not None:
            d.ids_beyond_vocab += int((real >= d.embedding_rows).sum())
            if self._untrained is not None:
                inside = real[(real >= 0) & (real < d.embedding_rows)].to(self._untrained.device)
                d.untrained_row_tokens += int(self._untrained[inside].sum())
        if not self._vocab_checked:
            self._compare_vocab()

    def _compare_vocab(self) -> None:
        """Once per tokenizer: its vocabulary against the tokenizer saved with the checkpoint, when both are known."""
        d = self.signals()
        tok = self._tokenizer() if self._tokenizer is not None else None
        if tok is None or d.checkpoint_path is None:
            return
        self._vocab_checked = True
        saved = vocab.saved_vocab(d.checkpoint_path)
        get_vocab = getattr(tok, "get_vocab", None)
        if saved and callable(get_vocab):
            d.vocab_agreement = vocab.agreement(saved, get_vocab())

    @guarded
    def embedding_raised(self, module: Any, ids: Any) -> None:
        """An embedding's forward raised (torch calls the global hooks on the way out, without the model's kwargs,
        so the batch itself cannot be read): ids past its table are the cause to name, read now since the run is
        ending. Position ids (every row 0, 1, 2, ...) past the table are a sequence too long, not a vocabulary."""
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.numel() == 0 or ids.ndim > 2:
            return
        top, rows = int(ids.max()), int(module.num_embeddings)
        if top < rows:
            return
        flat = ids.reshape(-1, ids.shape[-1])  # (B, T)
        if bool((flat - flat[:, :1] == torch.arange(flat.shape[1], device=ids.device)).all()):
            return
        self.signals().raised_ids = (top, rows)


def _count_label_tails(d: DataSignals, labelled: torch.Tensor, real: torch.Tensor) -> None:
    """Rows whose labels stop before their text does: every unlabelled piece comes after every labelled one.

    A row's first and last real positions (the special tokens) are left out. Whatever the alignment (each word's
    first piece labelled, or every piece), the pieces left unlabelled inside a row are continuations of words,
    spread through the row; a row whose labelled pieces form one unbroken run followed only by unlabelled ones
    is what a list of one tag per word laid on the word pieces gives (``[-100] + tags + [-100]``, padded with
    -100 to the row's length). Only rows with both kinds of interior piece say anything and are counted.
    """
    for row_labelled, row_real in zip(labelled, real):
        inner = row_labelled[row_real.nonzero().flatten()[1:-1]]
        if inner.numel() < 2 or bool(inner.all()) or not bool(inner.any()):
            continue
        d.token_rows_partly_labelled += 1
        if bool((inner[1:] <= inner[:-1]).all()):  # 1...1 0...0: the labels stop, the pieces go on
            d.token_rows_labels_stop += 1
