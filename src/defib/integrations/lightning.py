"""``DefibCallback`` for Lightning: watch ``trainer.fit()``, report at the end of training.

    callback = DefibCallback()
    L.Trainer(callbacks=[callback], ...).fit(module, loader)
    callback.diagnosis   # the defib.Diagnosis of the run

A thin adapter over the watch core, like the transformers one: PyTorch's
hooks see the model, optimizer, losses and batches; the callback marks the
start and end of training and hands over the optimizer and DataLoader that
Lightning built before it. Lightning runs forward and backward inside
``optimizer.step(closure)``; the watch core's step hook observes after the
closure (see ``evidence/hooks/torch_patches.py``), so each step is measured as in a plain loop.
"""

from __future__ import annotations

import lightning.pytorch as pl

from defib.integrations._session import WatchingCallback


class DefibCallback(WatchingCallback, pl.Callback):
    """Watch a Lightning training run with defib.

    ``json_path``: also write the JSON report there. ``report``: print the
    terminal report at the end of training (global rank 0 only).
    ``announce``: print one line on stderr the moment the predictions flatline.
    ``ignore``: rule codes left out of the diagnosis. ``log_to``: the
    tracker that gets defib's series and findings (``auto``: the Trainer's
    loggers and any other run the process has; ``tensorboard``, ``mlflow``,
    ``wandb``; ``none``).
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        schedulers = getattr(trainer, "lr_scheduler_configs", None) or []
        self._session.begin(pl_module, optimizer, trainer.train_dataloader,
                            schedulers[0].scheduler if schedulers else None, loggers=tuple(trainer.loggers))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._session.end(is_main_process=trainer.is_global_zero)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # the hooks must not outlive a failed fit; the report still describes what was seen
        self._session.end(is_main_process=trainer.is_global_zero)
