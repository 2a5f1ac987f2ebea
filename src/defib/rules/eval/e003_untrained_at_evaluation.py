"""E003: the script's own evaluation after training runs a module that still has its random initial weights."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class UntrainedAtEvaluation(Rule):
    """A module evaluated after training holds the weights it was built with, not the trained ones.

    What it detects:
        In a watched run, a module called at top level without gradients or
        in eval mode after training began, whose parameters were all created
        after the first optimizer step (it is not the object that trained),
        none of which was written since its initialisation (no
        ``load_state_dict``, no copy, no optimizer step), while the optimizer
        trained parameters of the same shapes, none with the same values.

    Why it flattens predictions:
        Training went well, but the scores come from a rebuilt copy that never
        received the trained weights: a head kept outside the model and
        saved with ``torch.save(head.state_dict())`` is built fresh for the
        evaluation and never loaded. Its random projection of the encoder's
        vectors predicts about the same class for every row, so the dev metric
        falls to chance although the training loss was healthy.

    Example:
        ``head = nn.Linear(encoder.dim, n_classes)`` in ``load_for_inference``
        without ``head.load_state_dict(torch.load(folder / "head.pt"))``.

    Fix:
        Load the saved weights into the rebuilt module before evaluating
        (``load_state_dict``), or evaluate the trained objects themselves.
    """

    code = "E003"
    cause = "eval.wrong_weights"
    title = "Evaluation runs a module with its initial, untrained weights"
    severity = Severity.ERROR
    needs = ("model",)

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        if m.eval_untrained is None:
            return None
        name, count = m.eval_untrained["module"], m.eval_untrained["params"]
        return self.finding(
            f"After {s.step} training steps the script evaluated a {name} ({count} parameters) built after "
            "training began, whose weights were never loaded or trained since its initialisation, while the "
            "optimizer trained parameters of the same shapes: the evaluation scores random weights.",
            confidence=0.85, evidence={"module": name, "params": count, "steps": s.step},
            where=m.eval_untrained_where,
            fix=f"Load the saved weights into the rebuilt {name} before evaluating (load_state_dict), or evaluate "
                "the trained objects.")
