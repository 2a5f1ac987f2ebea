"""O102 (probe): the backward pass never reaches the encoder although it is trainable."""

from __future__ import annotations

from defib.evidence.params import group_of
from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class DetachedInProbe(Rule):
    """Trainable encoder weights get no gradient (None or exactly zero) from the loss, while the head's do.

    What it detects:
        ``defib probe`` runs one backward pass from the loss and lists the
        trainable parameters whose ``.grad`` stayed None or is exactly zero.
        Reported when they are at least ``min_share`` of the trainable tensors
        outside the head and the pooler (an unused pooler legitimately gets
        nothing), the head itself gets gradients, and none reaches the
        embeddings: the graph is cut between the encoder and the head. (A
        gradient that reaches the embeddings but skips the layers means the
        head reads an early layer: see M103.)

    Why it flattens predictions:
        The encoder never adapts: the head learns on frozen, often
        near-identical features, and from a weak start it fits the mean.

    Example:
        ``pooled = self.bert(...).last_hidden_state[:, 0].detach()``, an
        encoder call under ``torch.no_grad()``, or a ``.numpy()`` round trip.

    Fix:
        Remove the ``.detach()`` / ``no_grad`` / numpy round trip between the
        encoder and the head.
    """

    code = "O102"
    cause = "optim.detached"
    title = "Graph broken between the loss and the encoder"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.grads")

    min_share = 0.5   # share of the trainable encoder tensors without a gradient

    def check(self, s: Signals) -> Finding | None:
        g = s.probe.grads
        cut = [n for n in g.no_grad + g.zero_grad if group_of(n) not in ("head", "pooler")]
        encoder = g.trainable_encoder
        head_gets = g.norms.get("head", 0.0) > 0
        if not cut or not head_gets or encoder <= 0 or len(cut) / encoder < self.min_share:
            return None
        if g.norms.get("embeddings", 0.0) > 0:
            return None  # the gradient reaches the bottom of the encoder: layers are skipped (pooling), not cut off
        return self.finding(
            f"One backward pass from the loss left {len(cut)} of {encoder} trainable encoder tensors without a gradient "
            f"while the head's gradient norm is {g.norms['head']:.3g}: the graph is cut between encoder and head.",
            confidence=0.9,
            evidence={"no_grad": [n for n in cut if n in set(g.no_grad)][:5],
                      "zero_grad": [n for n in cut if n in set(g.zero_grad)][:5],
                      "tensors_without_grad": len(cut), "trainable_encoder_tensors": encoder, "grad_norms": g.norms},
            fix="Remove .detach() / torch.no_grad() / .numpy() between the encoder's output and the head.")
