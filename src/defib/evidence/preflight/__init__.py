"""The data check's evidence: stream a data file (or in-memory columns) once and measure what the check rules read.

- :mod:`~defib.evidence.preflight.measure`: the one pass (:class:`Preflight`,
  ``measure_file``, ``measure_data``) that fills a
  :class:`~defib.signals.check.CheckSignals`.
- :mod:`~defib.evidence.preflight.tokens`: the model's tokenizer and config,
  and the texts' token lengths, truncation and unknown tokens.
- :mod:`~defib.evidence.preflight.labels`: the label column's type, counts,
  moments and file order.
- :mod:`~defib.evidence.preflight.sampling`: fixed-size samples that keep
  memory flat whatever the row count.

The file is read by :mod:`defib.evidence.readers`, the task a label column
implies is decided by :mod:`defib.evidence.task`, and the diagnosis and report
section are built by :mod:`defib.stages.check`. Nothing is imported here, so
that :mod:`defib.evidence.task` can use the label counter without a cycle.
"""
