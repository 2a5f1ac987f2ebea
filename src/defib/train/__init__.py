"""``defib train`` / ``defib predict``: a reference fine-tuning pipeline on the transformers ``Trainer``.

The remedies the flatline article ends with, built in: consistent
tokenization with dynamic padding and length-grouped, reshuffled batches;
standardised regression targets (mapped back at prediction); class weights
or focal loss for imbalanced labels; AdamW with warmup and a schedule,
clipping and gradient accumulation; early stopping on the dev metric; and
defib watching the run through its Trainer callback.
"""
