"""The numbers that several rules, fixes and plots must agree on, named once.

A run-time rule and its data-check or probe twin judge the same cause and
should draw the line at the same place; a plot that draws a rule's line, and
``defib run --confirm``, which decides whether a fix recovered a run, must use
the rule's own number. Each rule still holds its thresholds as class
attributes (the documented interface a subclass or a test can set),
initialised from here; the report and the fixes read them from here, never
from a rule module. A number only one rule uses stays in that rule.
"""

from __future__ import annotations

# -- the flatline (S001) and what counts as learning -------------------------------------------------
# Prediction spread / target spread below this is flat. A calibrated regressor whose predictions
# correlate with the targets at r has a prediction std of about r x the target std; r < 0.15 explains
# under 2% of the variance. (S001, the optimizer rules' "collapsed", the spread plot, --confirm.)
FLAT_SPREAD = 0.15
# Loss / constant-predictor loss at or above this: the model has learned (almost) nothing; for MSE it
# explains under a tenth of what the mean leaves (R^2 < 0.1). (S001, L004, "not_learning", --confirm.)
NOT_LEARNING = 0.9
# Optimizer steps of grace before a flat start counts: a freshly initialised head starts flat. (S001, L004,
# "not_learning".)
GRACE_STEPS = 30
# Whether a run that looks flat is still learning is judged over this many recent optimizer steps, split in
# halves (earlier, later): long enough for each half's mean loss to average out batch noise, short enough to
# describe the run now. (S001, S002.)
TREND_STEPS = 40
# Standard errors (of the per-step losses) by which the later half's mean loss may exceed the earlier half's
# before the loss counts as climbing back. With batches of 8 a per-step MSE varies by about half the
# baseline, so a slow fall is lost in the noise over 40 steps: the test only rules out a clear rise. (S001, S002.)
TREND_Z = 1.0
# The later half's prediction spread at least this share above the earlier half's is a widening spread. The
# spread is a mean over the last 16 batches: between halves it varies by under 10% for batches of 8, so a
# quarter is some 3 standard errors; a slow start widens by 2x over 40 steps. (S001, S002.)
SPREAD_GROWTH = 0.25

# -- truncation (D001 at run time, D101 on the data) -------------------------------------------------
MIN_TOKENIZED_ROWS = 32  # rows tokenized before a share of collisions means anything
COLLISIONS_WARN = 0.02   # share of distinct texts whose ids equal a different text's: suspicious
COLLISIONS_ERROR = 0.20  # ... and a collapse in the making

# -- the tokenizer (D009 at run time, D102 on the data) ----------------------------------------------
# Share of tokens that are the unknown token. English through its own WordPiece vocabulary stays under
# 0.001 (a stray emoji or rare script); at 1% something is off, at 5% whole words vanish in most rows.
UNK_SHARE_WARN = 0.01
UNK_SHARE_ERROR = 0.05

# -- labels and targets ------------------------------------------------------------------------------
# One exact regression target in this share of the rows is nearly constant: predicting it for every
# input is nearly optimal. (D006, D104.)
CONSTANT_TARGET_SHARE = 0.9
# |mean| or std of regression targets above this many output units is out of a fresh head's reach: it
# starts with outputs of order 0.1 to 1 and moves by about lr x hidden size per Adam step. (D008, D106.)
TARGET_SCALE = 10.0
IGNORE_INDEX = -100  # PyTorch's default ignore_index for cross-entropy: not a class id (D007, D105)

# -- the model ---------------------------------------------------------------------------------------
# Share of the encoder's LayerNorms exactly at (gain 1, bias 0) from which the encoder is random:
# pretrained weights never sit there, a model built from a config or re-initialised always does.
# (M001, M102; M103 and D201 defer to them above it.)
RANDOM_ENCODER_LAYERNORMS = 0.9
# Output spread across inputs / output size below this: one answer for every input. (S101; D201 defers
# to it below it.)
CONSTANT_OUTPUT_SPREAD = 0.01
# Spread of the encoder's token vectors across inputs below which they are too alike for comparing the
# head's input with them to mean anything. (M004, M103.)
MIN_TOKEN_SPREAD = 0.2

# -- the labels, at the end of a run that flatlined with no cause ---------------------------------------
# A held-out linear probe of the pretrained encoder's features for the run's labels, as a permutation test
# against the same labels shuffled (evidence/probes/linear_probe.py). Labels reordered apart from their texts
# score like any shuffle of themselves (their p-value is uniform); labels that belong score far beyond
# (all-MiniLM-L6-v2, 256 rows: Rotten Tomatoes 7 shuffled-sd above the shuffles, STS-B pairs 5; p 1/201).
# Between the two thresholds, nothing is said either way. (D010; the flatline's note.)
LABELS_UNPREDICTED_P = 0.05  # above: the features predict the labels no better than 1 shuffle in 20 does
LABELS_PREDICTED_P = 0.01    # at or below: the labels go with their texts
# The same probe must read a label that belongs by construction (does the row hold a token about half the rows
# hold) at this p or below, or its silence on the real labels says nothing. (D010)
PROBE_POWER_P = 0.01

# -- the optimizer -----------------------------------------------------------------------------------
MIN_TRAINABLE = 0.01  # share of the weights that must be trainable (O004, O101)
# Per-step |dw| / |w| of a healthy BERT fine-tuning step (Adam: about lr / weight RMS; 5e-5 gives ~1e-3):
# the unit findings state their update sizes in. (O001, O002.)
HEALTHY_UPDATE = 1e-3
# Encoder update / weight ratio at or above this, 10x a healthy step, rewrites the pretrained weights
# within a few dozen steps. (O001; L005 for a loss scaled up; the update-size plot's line.)
LR_TOO_HIGH_UPDATE = 1e-2
# Median update / weight ratio below this, ~100x under a healthy step (1e-4..5e-4 seen on models that
# learn), moves nothing. (O002; the update-size plot's line.)
LR_TOO_LOW_UPDATE = 3e-6
# The back-propagated loss this many times a per-example mean (or its inverse) scales a plain optimizer's
# step as much: the loss scale, not the learning rate, then explains the step size. (L005; O001 and O002
# leave such runs to it.)
LOSS_SCALE = 100.0
