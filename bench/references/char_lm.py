"""The reference of examples/char_lm on PyTorch: the same text (the fortunes, read as bytes, files
in name order, the last tenth validating), the same windows, models, optimizer, schedule and
clipping, trained the same way; prints the validation perplexity and time of every epoch.

    python3 char_lm.py [--model lstm|transformer] [--epochs E] [--threads T] [--limit BYTES]

(Run with Debian's python3-torch or PyTorch from PyPI; the weights start from PyTorch's own
initialisation, so the curves agree in their level, not bit for bit.)
"""
import argparse
import math
import os
import time

import torch

from torch_workloads import sequence_model  # the models, shared with the workloads

p = argparse.ArgumentParser()
p.add_argument("--model", default="lstm")
p.add_argument("--data-dir", default="/usr/share/games/fortunes")
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--seq-len", type=int, default=64)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--embed", type=int, default=64)
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--layers", type=int, default=1)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--limit", type=int, default=0)
p.add_argument("--val-fraction", type=float, default=0.1)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

# The text, as examples/char_lm.cpp reads it.
text = b""
for name in sorted(os.listdir(a.data_dir)):
    path = os.path.join(a.data_dir, name)
    if os.path.islink(path) or not os.path.isfile(path) or name.endswith(".dat"):
        continue
    with open(path, "rb") as f:
        text += f.read()
    if a.limit and len(text) >= a.limit:
        text = text[:a.limit]
        break
vocab = sorted(set(text))
index = {b: i for i, b in enumerate(vocab)}
data = torch.tensor([index[b] for b in text], dtype=torch.long)
split = int(len(text) * (1 - a.val_fraction))


def windows(part):
    n = (len(part) - 1) // a.seq_len
    x = part[:n * a.seq_len].view(n, a.seq_len)
    y = part[1:n * a.seq_len + 1].view(n, a.seq_len)
    return x, y


train_x, train_y = windows(data[:split])
val_x, val_y = windows(data[split:])
nn = torch.nn
model = sequence_model(a.model, a.seq_len, len(vocab), a.embed, a.hidden, a.layers, a.heads)
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
cosine = lambda e: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(e, a.epochs) / a.epochs))
schedule = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
loss_fn = nn.CrossEntropyLoss()
params = sum(p.numel() for p in model.parameters())
print(f"char_lm reference: torch {torch.__version__}, {a.model} ({params} parameters), "
      f"{len(text)} bytes ({len(vocab)} distinct), {len(train_x)} training and {len(val_x)} "
      f"validation sequences, {a.threads} thread(s)")
g = torch.Generator().manual_seed(a.seed)
for epoch in range(1, a.epochs + 1):
    model.train()
    order = torch.randperm(len(train_x), generator=g)
    start = time.perf_counter()
    total = 0.0
    for b in range(0, len(order), a.batch_size):
        i = order[b:b + a.batch_size]
        loss = loss_fn(model(train_x[i]), train_y[i].flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        total += loss.item() * len(i)
    seconds = time.perf_counter() - start
    schedule.step()
    model.eval()
    with torch.no_grad():
        val = sum(loss_fn(model(val_x[b:b + a.batch_size]), val_y[b:b + a.batch_size].flatten())
                  .item() * len(val_x[b:b + a.batch_size])
                  for b in range(0, len(val_x), a.batch_size)) / len(val_x)
    print(f"epoch {epoch}: validation perplexity {math.exp(val):.4f} "
          f"(train {math.exp(total / len(train_x)):.4f}), "
          f"{len(train_x) * a.seq_len / seconds:.0f} bytes/s, {seconds:.2f} s", flush=True)
