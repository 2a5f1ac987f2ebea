"""O004: the parameters that must learn are frozen."""

from __future__ import annotations

from defib.evidence.params import group_of, is_inactive_copy
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import collapsed, not_learning
from defib.signals.run import Signals


@register
class FrozenParameters(Rule):
    """The head, or nearly the whole model, has ``requires_grad=False``.

    What it detects:
        Parameters of the watched model with ``requires_grad=False``: the
        share of all weights that can still learn, and whether any of the
        head's parameters can. Freezing the encoder and training the head (a
        linear probe) is a legitimate choice: info only, a warning once the
        predictions have flattened or the loss is no better than the constant
        predictor's after the grace period (the head alone is not learning).

    Why it flattens predictions:
        A freshly initialised head that cannot learn maps every encoder
        output through random weights of small scale: its outputs barely vary
        and never approach the targets. With almost every weight frozen, the
        model stays at its initial, near-constant output.

        A model wrapped by PEFT (``get_peft_model``) trains a sliver of its
        weights by design; there the rule names the two ways PEFT freezes what
        must learn: a head left out of training (a ``LoraConfig`` without
        ``task_type`` and without the head in ``modules_to_save``: PEFT
        freezes every weight it does not adapt), and adapters attached only to
        modules the forward to the loss never uses (none of them ever gets a
        gradient: a ``target_modules`` naming the pooler of a model whose head
        reads ``last_hidden_state``, or a layer the forward skips), or only
        on modules after the encoder's layers (the pooler), where no layer
        that reads the tokens can adapt: in effect a linear probe, named once
        it is stuck.

    Example:
        ``for p in model.parameters(): p.requires_grad = False`` meant for
        ``model.bert.parameters()``; ``get_peft_model(model,
        LoraConfig(target_modules=["query", "value"]))`` on a classifier, with
        no ``task_type="SEQ_CLS"``.

    Fix:
        Freeze only what you mean to (``model.bert.embeddings``, lower
        layers) and check ``sum(p.numel() for p in model.parameters() if
        p.requires_grad)`` before training. With PEFT, ``LoraConfig(task_type=
        "SEQ_CLS", ...)`` or ``modules_to_save=["classifier"]`` for the head,
        ``target_modules`` that the forward runs (``model.print_trainable_parameters()``
        and one backward show which adapters get gradients).
    """

    code = "O004"
    cause = "optim.frozen"
    title = "Parameters that must learn are frozen"
    severity = Severity.ERROR
    needs = ("optim",)

    min_trainable = thresholds.MIN_TRAINABLE  # share of weights that must be trainable
    min_step = 2  # adapters idle after a sampled step this late: not a first step before a gradient arrived

    def check(self, s: Signals) -> Finding | None:
        o, m = s.optim, s.model
        if not o.n_params or not o.frozen:
            return None
        # PEFT's frozen original of a head it trains (modules_to_save) never runs: neither learning nor frozen by mistake
        head_frozen = [n for n in o.frozen if group_of(n) == "head" and not is_inactive_copy(n)]
        head_total = m.head_params if m else []
        share = o.n_trainable / o.n_params
        evidence = {"trainable_share": round(share, 6), "frozen_params": len(o.frozen),
                    "frozen_examples": o.frozen[:5], "head_frozen": head_frozen[:5]}
        peft = m is not None and m.adapter_method is not None
        if peft:
            evidence.update(adapter_method=m.adapter_method, adapter_modules=len(m.adapter_modules))
        if head_total and len(head_frozen) == len(head_total):
            if peft:
                return self._peft_head(s, share, head_frozen, evidence)
            return self.finding(
                f"Every parameter of the head ({', '.join(head_frozen[:3])}...) has requires_grad=False; "
                f"{share:.1%} of the model's weights can learn.",
                confidence=0.9, evidence=evidence, where=o.frozen_where,
                fix="for p in model.<head>.parameters(): p.requires_grad = True")
        if peft and m.adapter_modules:  # a sliver of trainable weights is what PEFT is for
            return self._idle_adapters(s, evidence) or self._adapters_above_the_layers(s, evidence)
        if share < self.min_trainable:
            trainable_head = bool(head_total) and len(head_frozen) < len(head_total)
            stuck = collapsed(s) or not_learning(s)
            if trainable_head:  # a linear probe: a legitimate choice, worth a note only while it learns
                return self.finding(
                    f"The encoder is frozen: only the head trains ({share:.2%} of {o.n_params:,} weights). Fine for a "
                    "linear probe; if predictions stay flat, unfreeze the top encoder layers.",
                    confidence=0.7 if stuck else 0.3, evidence=evidence, where=o.frozen_where,
                    severity=Severity.WARNING if stuck else Severity.INFO,
                    fix="for p in model.<encoder>.encoder.layer[-2:].parameters(): p.requires_grad = True")
            return self.finding(
                f"Only {share:.2%} of the model's {o.n_params:,} weights can learn ({len(o.frozen)} tensors are frozen).",
                confidence=0.85, evidence=evidence, where=o.frozen_where,
                fix="Unfreeze the encoder's top layers and the head; freeze only what you mean to.")
        if o.groups_with_grad == ["head"] and s.step >= self.min_step and (collapsed(s) or not_learning(s)):
            # enough weights are trainable on paper, but the ones left unfrozen do not feed the loss (the head reads
            # a layer below them): in effect a linear probe, and this one is stuck
            evidence["groups_with_grad"] = o.groups_with_grad
            return self.finding(
                f"Only the head receives gradients: {len(o.frozen)} tensors are frozen and the encoder weights left "
                f"trainable ({share:.2%} of all, head included) are not on the path to the loss, so the encoder "
                "cannot learn and the predictions stay flat.",
                confidence=0.7, evidence=evidence, where=o.frozen_where, severity=Severity.WARNING,
                fix="Unfreeze the layers the head reads (e.g. those below hidden_states[k]), or read the layer you train")
        return None

    def _peft_head(self, s: Signals, share: float, head_frozen: list[str], evidence: dict) -> Finding:
        """PEFT froze the head: it trains only what it adapts, and the head when the task type or modules_to_save say so."""
        m = s.model
        modules = sorted({_module_of(n) for n in head_frozen})
        evidence["head_modules"] = modules
        return self.finding(
            f"PEFT ({m.adapter_method}) froze the head ({', '.join(head_frozen[:3])}): only the "
            f"{len(m.adapter_modules)} adapted modules can learn ({share:.2%} of the weights), so the head's "
            "random weights never change. PEFT trains a head only when task_type names the task or "
            "modules_to_save lists it.",
            confidence=0.9, evidence=evidence, where=m.adapter_where or s.optim.frozen_where,
            fix=f'LoraConfig(task_type="SEQ_CLS", ...)  # or modules_to_save={modules!r}')

    def _idle_adapters(self, s: Signals, evidence: dict) -> Finding | None:
        """Every adapter is on a module the forward to the loss never uses: the encoder cannot learn."""
        o, m = s.optim, s.model
        if s.step < self.min_step or not o.adapters_idle or len(o.adapters_idle) < len(m.adapter_modules):
            return None
        learns = f"only the {', '.join(o.groups_with_grad)} can" if o.groups_with_grad else "nothing can"
        evidence.update(adapters_idle=o.adapters_idle[:10], groups_with_grad=o.groups_with_grad)
        return self.finding(
            f"None of the {len(m.adapter_modules)} LoRA adapters got a gradient in {s.step} steps (on "
            f"{', '.join(o.adapters_idle[:3])}{'...' if len(o.adapters_idle) > 3 else ''}): target_modules "
            f"names modules the forward to the loss never uses, so the encoder cannot learn: {learns}.",
            confidence=0.85, evidence=evidence, where=m.adapter_targets_where or m.adapter_where or o.where,
            fix='LoraConfig(target_modules=["query", "value"], ...)  # modules on the path to the loss')


    def _adapters_above_the_layers(self, s: Signals, evidence: dict) -> Finding | None:
        """Every adapter sits after the transformer layers (the pooler): the encoder is frozen in effect."""
        m = s.model
        groups = sorted({group_of(n) for n in m.adapter_modules})
        if any(g not in AFTER_THE_LAYERS for g in groups) or s.step < self.min_step \
                or not (collapsed(s) or not_learning(s)):
            return None
        evidence["adapter_groups"] = groups
        return self.finding(
            f"Every LoRA adapter sits after the encoder's layers (on {', '.join(m.adapter_modules[:3])}): no layer "
            "that reads the tokens can adapt, so only the pooler and the head learn, on features pretraining made "
            "for another task. In effect a linear probe, and this one is stuck.",
            confidence=0.7, severity=Severity.WARNING, evidence=evidence,
            where=m.adapter_targets_where or m.adapter_where or s.optim.where,
            fix='LoraConfig(target_modules=["query", "value"], ...)  # the attention layers, where fine-tuning happens')


AFTER_THE_LAYERS = ("pooler", "head")  # params.group_of's groups that read the encoder's output, not the tokens
PEFT_PREFIX = "base_model.model."  # what PeftModel puts before the wrapped model's own names


def _module_of(name: str) -> str:
    """The wrapped model's top module a parameter is in (``classifier``), as modules_to_save takes it."""
    return name.removeprefix(PEFT_PREFIX).split(".")[0]
