import os
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
import tempfile

import lightning as L
import numpy as np
import torch
from peft import LoraConfig, TaskType, get_peft_model
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=300)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=1e-3)
args = parser.parse_args()

L.seed_everything(args.seed, verbose=False)
torch.set_num_threads(1)

data = load_rotten_tomatoes()
pairs = list(zip(data.text, data.label))
random.Random(2024).shuffle(pairs)
dev_pairs, train_pairs = pairs[:400], pairs[400:]

tokenizer = AutoTokenizer.from_pretrained(model_path())


def collate(batch):
    texts = [t for t, _ in batch]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=96, return_tensors="pt")
    enc["labels"] = torch.tensor([y for _, y in batch], dtype=torch.long)
    return enc


class LoraClassifier(L.LightningModule):
    def __init__(self, lr, warmup, total_steps):
        super().__init__()
        base = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=len(RT_CLASSES))
        lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1,
                          target_modules=["query", "value"])
        self.model = get_peft_model(base, lora)
        self.lr = lr
        self.warmup = warmup
        self.total_steps = total_steps

    def forward(self, **batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        out = self(**batch)
        self.log("train_loss", out.loss, prog_bar=True)
        return out.loss

    def predict_step(self, batch, batch_idx):
        batch = {k: v for k, v in batch.items() if k != "labels"}
        return self(**batch).logits.argmax(dim=-1)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.01)
        scheduler = get_linear_schedule_with_warmup(optimizer, self.warmup, self.total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": "step",
                "frequency": 1,
            },
        }


module = LoraClassifier(args.lr, warmup=int(0.1 * args.max_steps), total_steps=args.max_steps)
module.model.print_trainable_parameters()

train_loader = DataLoader(train_pairs, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
dev_loader = DataLoader(dev_pairs, batch_size=64, shuffle=False, collate_fn=collate)

trainer = L.Trainer(
    max_steps=args.max_steps,
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    default_root_dir=tempfile.mkdtemp(prefix="s5_lora_"),
    log_every_n_steps=25,
)
trainer.fit(module, train_dataloaders=train_loader)

preds = torch.cat(trainer.predict(module, dataloaders=dev_loader)).numpy()
gold = np.array([y for _, y in dev_pairs])
macro = f1_score(gold, preds, average="macro", labels=list(range(len(RT_CLASSES))), zero_division=0)
print(f"DEV_METRIC macro_f1={macro:.4f} pred_std={float(np.std(preds)):.4f}")
