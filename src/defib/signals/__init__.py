"""Typed measurements: what evidence sources hand to rules, one module per stage.

``common`` (:class:`~defib.signals.common.Where`, :class:`~defib.signals.common.Series`),
``run`` (a watched training run), ``check`` (a data file before training),
``probe`` (active questions to a model) and ``predict`` (a fine-tuned model's
own predictions). Evidence sources fill them; rules only read them. This
package imports nothing else from defib, so every layer may import it.
"""
