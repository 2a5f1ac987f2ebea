"""The typed measurements of ``defib probe``: active questions put to a model at rest.

The probes (:mod:`defib.evidence.probes`) fill these; the probe-stage rules
(O1xx, M1xx, S1xx) only read them. A part left ``None`` did not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InitialLoss:
    """The loss of the untouched model on the sample, against what an uninformed head would score."""

    loss: float
    reference: float                          # ln K (classification) or mean(y^2) (regression: a head at 0)
    baseline: float                           # the best constant predictor: label entropy or var(y)
    n_classes: int | None = None
    output_absmax: float = 0.0                # largest |output| over the sample
    output_std: float = 0.0                   # std of the outputs over rows (all classes pooled)
    target_std: float | None = None           # regression targets


@dataclass
class Sensitivity:
    """How much the outputs and the representations change when the input does (eval mode, no dropout)."""

    rows: int
    output_spread: float                      # rel_spread of the outputs across rows (0: one output for all)
    token_spread: float | None = None         # rel_spread of the last encoder layer's token vectors (real tokens)
    cls_spread: float | None = None           # rel_spread of the last encoder layer's position-0 vectors
    pooled_spread: float | None = None        # rel_spread of the vectors entering the head's first Linear
    mask_accepted: bool | None = None         # the model's forward takes an attention_mask
    padded_rows: int = 0                      # rows with at least one padding position
    mask_rows_changed: int = 0                # rows whose mask changed when the mask was rolled across the batch
    mask_effect: float | None = None          # mean |output change| on those rows / std of the outputs across rows
    layernorm_at_init: float | None = None    # share of encoder LayerNorms exactly at (weight 1, bias 0)
    encoder_layernorms: int = 0


@dataclass
class GradFlow:
    """One backward pass from the probe loss: which parameters the gradient reaches."""

    norms: dict[str, float]                   # module group -> gradient norm (groups with any grad)
    frozen: list[str]                         # requires_grad False
    no_grad: list[str]                        # trainable, but the gradient stayed None
    zero_grad: list[str]                      # gradient present and exactly zero
    trainable: int                            # trainable parameter tensors
    trainable_encoder: int                    # ... outside the head and the pooler
    tensors: int                              # all parameter tensors
    head: list[str] = field(default_factory=list)  # parameter names in the head group
    trainable_share: float = 1.0              # trainable weights / all weights


@dataclass
class LRRange:
    """An exponential learning-rate sweep with early stop (the weights are restored afterwards)."""

    lrs: list[float]
    losses: list[float]                       # smoothed training loss at each lr
    suggested_lr: float | None                # a tenth of the lr at the lowest smoothed loss
    min_loss_lr: float | None
    diverged_lr: float | None                 # first lr at which the loss ran away (None: never within the sweep)
    optimizer: str = ""
    start_loss: float | None = None


@dataclass
class Overfit:
    """Can the model drive the loss of one small batch to a tenth of its constant-predictor loss?"""

    rows: int
    steps: int                                # steps taken (stops early on success)
    max_steps: int
    losses: list[float]
    baseline: float                           # constant-predictor loss on this batch
    goal: float                               # the loss to reach
    reached_at: int | None                    # step at which the loss reached the goal, or None
    lr: float
    optimizer: str = ""


@dataclass
class Permutation:
    """The same short training on the real labels and on the labels shuffled, judged on held-out rows."""

    rows: int
    held_out: int                             # rows held out (not trained on)
    steps: int
    start_loss: float                         # held-out loss before training
    real_loss: float                          # held-out loss after training on the real labels
    permuted_loss: float                      # held-out loss after the same training on permuted labels
    baseline: float                           # constant-predictor loss on the held-out rows
    lr: float
    real_train_loss: float | None = None      # loss on the training rows (against the labels trained on)
    permuted_train_loss: float | None = None


@dataclass
class ProbeSignals:
    """What the active probes measured; each part is None when that probe did not run or failed."""

    task: str
    rows: int
    source: str                               # where the sample came from, for the report
    user_lr: float | None = None              # the largest learning rate of the user's optimizer, if one was given
    initial: InitialLoss | None = None
    sensitivity: Sensitivity | None = None
    grads: GradFlow | None = None
    lr_range: LRRange | None = None
    overfit: Overfit | None = None
    permutation: Permutation | None = None
    errors: dict[str, str] = field(default_factory=dict)  # probe name -> the error that stopped it
    seconds: dict[str, float] = field(default_factory=dict)  # probe name -> wall time
