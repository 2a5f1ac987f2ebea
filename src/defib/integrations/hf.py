"""``DefibCallback`` for the transformers ``Trainer``: watch ``trainer.train()``, report at its end.

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[DefibCallback()])
    trainer.train()
    callback.diagnosis   # the defib.Diagnosis of the run

A thin adapter: the watch core sees the model, optimizer, losses and batches
through PyTorch's own hooks; the callback only says when training starts and
ends, and hands over what the Trainer built before it (optimizer, scheduler,
DataLoader). It observes and never steers (it returns no control changes).
"""

from __future__ import annotations

from transformers import TrainerCallback

from defib.integrations._session import WatchingCallback


class DefibCallback(WatchingCallback, TrainerCallback):
    """Watch a transformers ``Trainer`` run with defib.

    ``json_path``: also write the JSON report there. ``report``: print the
    terminal report at the end of training (the main process only).
    ``announce``: print one line on stderr the moment the predictions flatline.
    ``ignore``: rule codes left out of the diagnosis. ``log_to``: the
    tracker that gets defib's series and findings (``auto``: the ones
    ``report_to`` set up; ``tensorboard``, ``mlflow``, ``wandb``; ``none``).
    """

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None,
                       train_dataloader=None, **kwargs):
        self._session.begin(model, optimizer, train_dataloader, lr_scheduler)

    def on_train_end(self, args, state, control, **kwargs):
        self._session.end(is_main_process=state.is_world_process_zero)
