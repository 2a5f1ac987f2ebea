"""The typed measurements of a watched training run (``defib run``, ``defib.watch``, the callbacks).

The watcher (:mod:`defib.evidence.watch`) fills these; the run-stage rules
only read them. A field left ``None`` means "not observed",
which is different from zero: a rule that needs it is skipped, and the report
says so. Series are :class:`defib.signals.common.Series` (step, value) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from defib.signals.common import Series, Where
from defib.signals.probe import ProbeSignals

MAX_INTERNAL_ERRORS = 20  # internal errors kept per run (the watcher's and the rules' together)
REGRESSION_LOSSES = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
CLASS_LOSSES = ("cross_entropy", "nll_loss")
MULTILABEL_LOSSES = ("binary_cross_entropy_with_logits", "binary_cross_entropy")
TOKEN_TASK = "token_classification"  # the task of a classification loss whose rows are tokens (NER, tagging)
MAX_PLOTTED_CLASSES = 12  # classes given their own share series; the rest are summed as "other"
QUANTILES = (10, 50, 90)  # percentiles of predictions and targets kept over time for the report


@dataclass
class LossSignals:
    """What reached the training loss (calls made with gradients enabled)."""

    fn: str                                   # torch.nn.functional name, e.g. "mse_loss"; for a library's own
    #                                           loss read by its patch, its class name, e.g. "CoSENTLoss"
    family: str                               # regression | classification | multilabel
    calls: int = 0
    reduction: str = "mean"
    input_shape: tuple[int, ...] = ()
    target_shape: tuple[int, ...] = ()
    target_dtype: str = ""
    broadcast_calls: int = 0                  # calls whose input and target shapes differ
    weighted: bool = False                    # weight= or pos_weight= given
    pos_weight: list[float] | None = None     # BCE's pos_weight per label (one value: every label), as given
    weight_where: Where | None = None         # the line that set the loss's weight= / pos_weight= value
    where: Where | None = None                # the user's loss call
    values: Series = field(default_factory=Series)      # loss per optimizer step
    baseline: float | None = None             # loss of the best constant predictor on the targets seen
    first: float | None = None                # first finite loss value
    prob_rows_share: float | None = None      # CE inputs: share of rows >= 0 summing to 1
    logprob_rows_share: float | None = None   # NLL inputs: share of rows whose exp sums to 1 (log-probabilities)
    unit_interval_share: float | None = None  # BCE-with-logits inputs: share of values in [0, 1]
    producer: tuple[str, ...] = ()            # grad_fn names from the loss input back, nearest first
    producer_where: Where | None = None       # where the loss input was last transformed, if known
    module_where: Where | None = None         # where the loss module (nn.MSELoss(...)) was built, if one was used
    label_where: Where | None = None          # where the targets were put under their key (item["labels"] = ...)
    input_requires_grad: bool | None = None
    nonfinite_step: int | None = None
    failed: str | None = None                 # the loss call raised this error
    scale_factor: float | None = None         # loss / loss recomputed with mean reduction (1 = plain mean)
    # regression, at sampled steps (step 1: the head's first outputs): share of the batch's examples whose loss
    # gradient on the prediction is the same saturated push, at the batch's largest magnitude on one side (to 1%),
    # for targets that differ (a Huber's or an L1's gradient beyond its linear zone). 1: the gradient says nothing
    # about which example is which, only "move the mean"; about 1/batch for a squared error
    grad_saturated: Series = field(default_factory=Series)
    soft_target_max: float | None = None      # cross-entropy given float (soft) targets: their largest value
    # classification whose rows are tokens: logits [B, T, K] (or [B, K, T]), or [N, K] flattened or indexed from them
    # a hand-written loss that averages pred - target over the batch before its abs or square
    # (``abs((pred - y).mean())``): it fits only the batch mean; no targets are read from it
    reduced_first: bool = False
    per_token: bool = False
    ignore_index: int | None = None           # cross-entropy / NLL targets at this value are dropped (None: no index)
    # "call": a torch loss defib hooks (F.mse_loss, nn.CrossEntropyLoss); "graph": a loss written with tensor ops,
    # read from backward()'s autograd graph (evidence/watch/graph.py), ``fn`` naming the loss it computes;
    # "library": a library's loss module read by its patch (sentence-transformers: evidence/watch/sentence.py)
    source: str = "call"
    # the loss input is a quantity of known range that the loss compares with the targets' values:
    # (what it is, lowest, highest), e.g. ("cosine similarity", -1.0, 1.0); None: unknown or unbounded
    bounded_input: tuple[str, float, float] | None = None


@dataclass
class PredSignals:
    """Predictions against targets, from the loss inputs."""

    task: str                                 # regression | classification | multilabel (a token's tag is a class)
    n_seen: int = 0
    window_std: float | None = None           # std of the most recent predictions
    batch_std: float | None = None            # mean within-batch std of the predictions, recent batches
    window_mean: float | None = None
    target_std: float | None = None           # over every target seen
    target_mean: float | None = None
    target_min: float | None = None
    target_max: float | None = None
    target_integer: bool | None = None        # every target is a whole number
    n_classes: int | None = None              # width of the logits
    label_counts: dict[int, int] = field(default_factory=dict)
    pred_counts: dict[int, int] = field(default_factory=dict)  # recent predicted classes
    target_nonfinite: int = 0                 # NaN / inf targets seen
    target_infinite: int = 0                  # of those, +-inf: an overflow, log(0), 1/0, not a missing label
    ignored: int = 0                          # targets at the loss's ignore_index (-100: padding, later word pieces)
    #                                           dropped before anything else here counts them
    # multilabel: per label (column), the share of 0/1 targets that are 1, over every target seen, and the share
    # of recent predictions above 0.5 (sigmoid of the logits for BCE with logits); [] until seen
    label_pos_rate: list[float] = field(default_factory=list)
    pred_pos_rate: list[float] = field(default_factory=list)
    recent_preds: list[float] = field(default_factory=list)    # the prediction window, for rules
    recent_targets: list[float] = field(default_factory=list)
    spread: Series = field(default_factory=Series)   # within-batch prediction std / target std (regression),
    #                                                  predicted-class entropy / label entropy (classification)
    loss_window: Series = field(default_factory=Series)  # recent mean loss
    baseline: Series = field(default_factory=Series)     # constant-predictor loss, as the targets accumulate
    # for the HTML report's plots, at sampled steps (bounded: Series caps, MAX_PLOTTED_CLASSES)
    pred_quantiles: dict[str, Series] = field(default_factory=dict)    # regression: p10/p50/p90 of recent predictions
    target_quantiles: dict[str, Series] = field(default_factory=dict)  # regression: p10/p50/p90 of recent targets
    class_share: dict[str, Series] = field(default_factory=dict)       # classification: share of recent predictions per class


@dataclass
class OptimSignals:
    """What the optimizer(s) did."""

    optimizer: str = ""
    where: Where | None = None
    lr_where: Where | None = None             # the lr= keyword at construction, if there was one
    lr_initial: list[float] = field(default_factory=list)
    lr: Series = field(default_factory=Series)  # max learning rate over param groups, per step
    steps: int = 0
    scheduler: str | None = None
    scheduler_where: Where | None = None                     # the scheduler's construction
    scheduler_cadence_where: Where | None = None             # Lightning's per-epoch stepping of it, if so
    scheduler_step_where: Where | None = None                # the user's first scheduler.step() call
    scheduler_steps: int = 0
    # the run's plan, when something states it: a transformers schedule's num_training_steps and
    # num_warmup_steps (whoever built it: the script, the Trainer, a Lightning module), else the Trainer's
    # max_steps and warmup_steps from TrainingArguments. In optimizer steps; None: not stated anywhere
    planned_steps: int | None = None
    warmup_steps: int | None = None
    plan_source: str | None = None                           # what stated it, e.g. "get_linear_schedule_with_warmup"
    warmup_where: Where | None = None                        # the argument that set the warmup (warmup_steps=...)
    grad_norm: dict[str, Series] = field(default_factory=dict)   # per module group
    update_ratio: dict[str, Series] = field(default_factory=dict)  # |dw| / |w| per module group
    grad_total: Series = field(default_factory=Series)
    backward_calls: int = 0
    optimizers_built: int = 0                 # optimizers constructed, stepped or not
    step_guard_where: Where | None = None     # the `if` around the user's optimizer.step() (or that call), if found
    backward_where: Where | None = None
    # backward() on a loss that no hooked loss call made and whose graph defib could not read as predictions
    # against targets: the autograd node names it saw, for the report to say what the loss was made of
    unread_loss: list[str] = field(default_factory=list)
    leaf_loss_where: Where | None = None      # backward() on a tensor with no graph: the line that built it
    step_where: Where | None = None
    zero_grad_calls: int = 0
    zero_grad_where: Where | None = None
    # the first zero_grad() between a backward() and its step(): the misplaced call. The first call of all
    # may be a framework's (under Lightning's manual optimization, fit() makes one before any training_step)
    late_zero_grad_where: Where | None = None
    steps_without_zero_grad: int = 0          # steps with no zero_grad since the previous step
    steps_zeroed_before_step: int = 0         # steps whose gradients were cleared after backward, before step
    micro_batches: list[int] = field(default_factory=list)  # backward calls per step (recent)
    n_params: int = 0
    n_trainable: int = 0
    frozen: list[str] = field(default_factory=list)          # requires_grad False
    frozen_where: Where | None = None                        # the user's line that sets requires_grad False, if found
    encoder_weight_rms: float | None = None                  # median RMS of the encoder's weight matrices at step 1
    never_grad: list[str] = field(default_factory=list)      # trainable, in the optimizer, grad stays None
    not_in_optimizer: list[str] = field(default_factory=list)  # get gradients, not in any optimizer
    groups_with_grad: list[str] = field(default_factory=list)
    # groups whose update_ratio is a LoRA adapter's change of its layer, ||s (B'A' - BA)|| / ||W||, not a
    # factor's own change (evidence/adapters.py); empty for a model PEFT did not wrap
    adapter_groups: list[str] = field(default_factory=list)
    # modules whose trainable LoRA factors in the optimizer got no gradient on any sampled step so far, as the
    # model names them (at most 200): adapters on modules the forward to the loss never uses
    adapters_idle: list[str] = field(default_factory=list)
    nonfinite: dict[str, int] = field(default_factory=dict)   # "loss"/"grad"/"weight" -> first step
    # torch.amp.GradScaler (plain, or inside accelerate's fp16): its step() calls on the watched optimizer, the
    # ones it skipped for inf/NaN gradients (the optimizer's own step never ran; they still count as steps of
    # the run), how many of the latest ones were skipped in a row, the scale at the first and the latest
    # step (None: not read yet), and the user's scaler.step line
    scaler_steps: int = 0
    scaler_skipped: int = 0
    scaler_skip_streak: int = 0
    scaler_scale_first: float | None = None
    scaler_scale_last: float | None = None
    scaler_where: Where | None = None
    half_cast_where: Where | None = None  # the user's line that cast a model's weights to float16/bfloat16
    param_dtypes: list[str] = field(default_factory=list)


@dataclass
class ModelSignals:
    """The model's structure and internal representations."""

    name: str = ""
    pretrained_loaded: bool | None = None     # from_pretrained seen for this model
    layernorm_at_init: float | None = None    # share of encoder LayerNorms exactly at (weight 1, bias 0)
    head_params: list[str] = field(default_factory=list)
    encoder_tensors: int = 0                  # parameter tensors outside the head
    head_init_std: float | None = None
    head_init_absmax: float | None = None
    head_init_nonfinite: bool = False
    head_fan_in: int | None = None
    head_input_spread: Series = field(default_factory=Series)  # rel. spread of vectors entering the head
    # share of the batch rows whose head input is the encoder's vector at a padded position (sampled steps,
    # batches with padding only)
    head_input_pad_share: Series = field(default_factory=Series)
    token_spread: Series = field(default_factory=Series)       # rel. spread of encoder token vectors
    cls_spread: Series = field(default_factory=Series)         # rel. spread of position-0 vectors
    built_where: Where | None = None          # where the user built the encoder (from_pretrained / from_config / a class)
    init_where: dict[str, Where] = field(default_factory=dict)  # parameter name -> user's nn.init call on it
    head_input_where: Where | None = None     # the user's line that calls the head
    pool_layer_where: Where | None = None     # the line that chose the hidden layer that head input is read from
    head_input_detached: bool = False         # the head's input carried no gradient path in training
    nograd_forward_where: Where | None = None  # the encoder ran under no_grad while training
    # a module evaluated (no grad or eval mode) after training with the weights it was built with: created after the
    # first step, never written since its initialisation, a rebuilt copy of trained parameters ({"module": class name,
    # "params": count}); None: no such evaluation seen
    eval_untrained: dict | None = None
    eval_untrained_where: Where | None = None  # the user's line that built that module
    # texts in each of two consecutive encode() calls with the same list after training on pairs (the two sides of an
    # evaluation's pairs encoded from one column); None: not seen
    eval_same_texts: int | None = None
    eval_same_texts_where: Where | None = None  # the user's line of the second of those calls
    # sentence embeddings (a sentence-transformers model's output): mean cosine between the embeddings of the
    # different inputs of a training batch, sampled steps; near 1: every text points the same way (collapse)
    embedding_cosine: Series = field(default_factory=Series)
    # a model wrapped by PEFT (peft.get_peft_model): its method ("LORA"), None for any other model
    adapter_method: str | None = None
    adapter_where: Where | None = None        # the user's line that built the PEFT config (LoraConfig(...))
    adapter_modules: list[str] = field(default_factory=list)  # modules carrying a LoRA adapter, as the model names them
    lora_scale: float | None = None           # median LoRA scale s (lora_alpha / r, or / sqrt(r) with rsLoRA)
    lora_scale_where: Where | None = None     # the line that set lora_alpha (the config's line if not found)
    adapter_targets_where: Where | None = None  # the LoraConfig's target_modules= line


@dataclass
class DataSignals:
    """Batches as the model saw them, the loaders and the tokenizer calls."""

    loader_where: Where | None = None
    collate_where: Where | None = None        # the training loader's collate function, when the script made it
    shuffle: bool | None = None
    sampler: str | None = None
    batches: int = 0
    within_batch_var_ratio: float | None = None  # mean within-batch target variance / overall variance
    batch_mean_autocorr: float | None = None     # lag-1 autocorrelation of batch target means
    pad_token_id: int | None = None
    batches_with_pad: int = 0
    batches_pad_no_mask: int = 0
    batches_mask_all_ones_with_pad: int = 0
    batches_mask_inverted: int = 0
    mask_where: Where | None = None
    # token-level labels against the batch's attention mask (sampled steps): supervised positions, and of them
    # the ones at padding (mask 0), which a tagger then learns to tag as whatever they were given
    labelled_tokens: int = 0
    labelled_padding: int = 0
    # rows of a token-level loss with both labelled and unlabelled pieces between their special tokens, and of
    # them the rows whose labels stop early (one unbroken labelled run, then only unlabelled pieces): tags per
    # word laid on word pieces (see evidence/watch/data.py, _count_label_tails)
    token_rows_partly_labelled: int = 0
    token_rows_labels_stop: int = 0
    word_split_where: Where | None = None     # a tokenizer call with is_split_into_words=True (where tags are aligned)
    dup_rows_share: float | None = None       # rows whose input_ids duplicate another row in the batch
    tokenizer_where: Where | None = None
    tokenizer_max_length: int | None = None
    tokenizer_rows: int = 0
    rows_at_max_length: int = 0
    distinct_texts: int = 0
    distinct_encodings: int = 0
    # how much text the cap cut, from the first rows of each truncating tokenizer call during training (before
    # it, until training tokenizes any; LENGTH_SAMPLE_* in evidence/watch/data.py; the cut rows re-tokenized uncut
    # once): rows measured, and the median row's share of its text (tokens past the special ones) that the cap
    # dropped (None: no truncating call seen)
    length_sample_rows: int = 0
    text_lost_median: float | None = None
    cap_where: Where | None = None            # the user's line that set the cap the tokenizer cut at (max_length=,
    #                                           model_max_length, sentence-transformers' max_seq_length)
    # the token ids of the training batches against the model's embedding table and the checkpoint's tokenizer
    tokens_seen: int = 0                      # real (unpadded) token ids in the training batches checked
    unk_token_id: int | None = None           # the tokenizer's unknown token, None when no tokenizer call was seen
    unk_tokens: int = 0                       # of tokens_seen, ids equal to unk_token_id
    embedding_rows: int | None = None         # rows of the model's input embedding (None: no embedding found)
    ids_beyond_vocab: int = 0                 # of tokens_seen, ids at or beyond embedding_rows
    max_id: int | None = None                 # largest id in the training batches checked
    tokenizer_max_id: int | None = None       # largest id the tokenizer calls produced (read on the host)
    checkpoint_vocab: int | None = None       # vocab_size saved in the checkpoint's config.json (before a resize)
    untrained_row_tokens: int = 0             # of tokens_seen, ids whose embedding row the checkpoint never trained
    #                                           (rows a resize added past checkpoint_vocab, all-zero rows but pad's)
    vocab_agreement: float | None = None      # share of the checkpoint's saved tokenizer vocabulary that the tokenizer
    #                                           in use maps to the same ids (None: not both on disk and known)
    checkpoint_path: str | None = None        # the folder the model was loaded from, when on disk
    tokenizer_path: str | None = None         # the tokenizer's name_or_path
    tokenizer_load_where: Where | None = None  # the user's line that made the tokenizer (from_pretrained, training it)
    raised_ids: tuple[int, int] | None = None  # (largest id, rows) of an embedding whose forward raised on ids
    #                                           past its table (read on the way out of the crash)


@dataclass
class ProbeScore:
    """A held-out linear probe's score for a set of labels, against the same on the labels permuted (evidence/probes/linear_probe.py)."""

    score: float              # out-of-fold R^2 against the constant predictor (0: no information)
    null_mean: float          # the permuted labels' scores: mean, standard deviation, 95th percentile
    null_sd: float
    null_q95: float
    p_value: float            # share of permutations scoring at least as well (with the real one counted)
    rows: int
    permutations: int


@dataclass
class LabelControl:
    """The label control, run once at the end of a run that flatlined with no cause in sight.

    The training rows the run kept (as the encoder received them, with their
    targets; evidence/watch/rows.py) encoded by a fresh copy of the encoder
    loaded from its checkpoint folder, and a held-out linear probe of those
    features for the run's labels against the same labels permuted
    (evidence/probes/linear_probe.py).
    """

    rows: int                                 # training rows kept with their targets
    checkpoint: str | None = None             # the folder the fresh copy came from (None: not on disk)
    skipped: str | None = None                # why it did not run, or stopped (None: it ran to the end)
    labels: ProbeScore | None = None          # the run's labels (None: skipped before it measured)
    # the same probe on labels read off the rows themselves (does the row contain each of the tokens that about
    # half of them contain): whether these features and this many rows can show labels that belong at all
    power: ProbeScore | None = None
    seconds: float | None = None              # wall time it took
    # why it ran: "flatline" (flat predictions, no cause in sight) or "pair_scores" (a bi-encoder whose own
    # scores for the pairs kept, at its first steps, did not follow their labels)
    trigger: str = "flatline"
    pairs: bool = False                       # the rows were a bi-encoder's pairs (pair features, overlap control)
    # a bi-encoder's first steps: Spearman's rho of its own scores for the pairs kept against their labels
    scores_rho: float | None = None
    scores_p: float | None = None             # its one-sided p-value against no relation


@dataclass
class Signals:
    """Everything measured so far; each part is None until observed."""

    step: int = 0
    task: str = "unknown"                     # regression | classification | token_classification | multilabel | unknown
    loss: LossSignals | None = None
    preds: PredSignals | None = None
    optim: OptimSignals | None = None
    model: ModelSignals | None = None
    data: DataSignals | None = None
    probe: ProbeSignals | None = None         # filled by ``defib probe``, read by the probe-stage rules
    label_control: LabelControl | None = None  # the end-of-run label control (None: not attempted)
    script_exit: int | None = None
    internal_errors: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
