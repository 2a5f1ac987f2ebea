"""Do an encoder's features predict a set of labels better than the same labels shuffled? A held-out linear probe.

The question behind a label-misalignment check is whether the labels go with
their inputs at all. A pretrained encoder's features carry what its inputs
say (sentiment, topic, how alike two sentences are) well enough that a linear
read-out of them predicts labels that belong to the inputs clearly better
than chance, even from a couple of hundred rows; labels that were reordered
apart from their inputs are, to every read-out, a shuffle. So: fit a ridge
regression from the features to the labels on four fifths of the rows, score
it on the fifth it did not see, over five folds, and compare that score with
the same procedure's on the labels permuted at random (a permutation test:
its p-value needs no assumption about the features or the labels' law).

The score is the out-of-fold R^2 against each fold's constant predictor (the
training folds' mean label, or class shares for one-hot class labels): 0 is a
constant's, above 0 is information. The ridge penalty is chosen per label set
from a fixed grid by that same score, for the real and for every permuted set
alike, so the choice favours neither. Written in the kernel (dual) form with
one eigendecomposition per fold: rows are few (hundreds), features many, and
all permutations are solved at once as columns of one matrix. No fitting
randomness: the folds and the permutations come from a private generator, so
the user's random streams are never touched.
"""

from __future__ import annotations

import torch

from defib.signals.run import ProbeScore

FOLDS = 5
PERMUTATIONS = 200
# penalties as multiples of the mean eigenvalue of the training folds' Gram matrix: from nearly none to
# nearly a constant predictor, so the grid's scale follows the features'
PENALTY_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def probe_labels(features: torch.Tensor, labels: torch.Tensor, *, permutations: int = PERMUTATIONS,
                 seed: int = 0) -> ProbeScore:
    """Score a ridge read-out of ``features`` (rows x dims) for ``labels`` (rows, or rows x outputs) by permutation.

    Class labels go in one-hot (rows x classes), regression targets as a vector.
    """
    x = features.detach().double()
    y = labels.detach().double().reshape(x.shape[0], -1)
    n, k = y.shape
    if n < 2 * FOLDS:
        raise ValueError(f"a {FOLDS}-fold probe needs at least {2 * FOLDS} rows, got {n}")
    gen = torch.Generator().manual_seed(seed)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-8)  # no label used: the same for every label set
    perms = [torch.arange(n)] + [torch.randperm(n, generator=gen) for _ in range(permutations)]
    ys = torch.cat([y[p] for p in perms], dim=1)  # n x (1 + permutations) * k: every label set at once
    fold = torch.randperm(n, generator=gen) % FOLDS
    sse = torch.zeros(len(PENALTY_GRID), ys.shape[1], dtype=torch.float64)
    sst = torch.zeros(ys.shape[1], dtype=torch.float64)
    for f in range(FOLDS):
        test, train = fold == f, fold != f
        xm = x[train].mean(0)
        xtr, xte = x[train] - xm, x[test] - xm
        ym = ys[train].mean(0)
        ytr = ys[train] - ym
        gram = xtr @ xtr.T
        evals, evecs = torch.linalg.eigh(gram)
        evals = evals.clamp_min(0.0)
        cross = (xte @ xtr.T) @ evecs          # test x train, in the eigenbasis
        proj = evecs.T @ ytr                   # train labels in the eigenbasis
        scale = evals.mean().clamp_min(1e-12)
        for i, c in enumerate(PENALTY_GRID):
            pred = cross @ (proj / (evals + c * scale).unsqueeze(1)) + ym
            sse[i] += ((ys[test] - pred) ** 2).sum(0)
        sst += ((ys[test] - ym) ** 2).sum(0)
    r2 = 1.0 - sse.reshape(len(PENALTY_GRID), -1, k).sum(2) / sst.reshape(-1, k).sum(1).clamp_min(1e-12)
    best = r2.max(0).values  # per label set, its best penalty
    real, null = float(best[0]), best[1:]
    return ProbeScore(score=real, null_mean=float(null.mean()), null_sd=float(null.std()),
                      null_q95=float(torch.quantile(null, 0.95)),
                      p_value=float(((null >= real).sum() + 1) / (len(null) + 1)),
                      rows=n, permutations=permutations)


def one_hot(class_ids: list[int]) -> torch.Tensor:
    """Class ids as one-hot columns, one per class present."""
    classes = sorted(set(class_ids))
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(class_ids), len(classes), dtype=torch.float64)
    out[torch.arange(len(class_ids)), torch.tensor([index[c] for c in class_ids])] = 1.0
    return out
