"""The comparison workloads on PyTorch: Debian's python3-torch (1.13) or PyTorch 2.x from PyPI,
in eager mode or, with --compile, the whole training step through torch.compile (inductor).

    python3 torch_workloads.py [--compile] mlp|cnn EPOCHS BATCH THREADS | tiny STEPS THREADS
    python3 torch_workloads.py [--compile] lstm STEPS THREADS | transformer SEQ STEPS THREADS
    python3 torch_workloads.py gradcheck

Prints the same "result" lines as bench/workloads.cpp, with the torch version. Every side warms
up on a few steps before it is timed (with --compile, that is where the compiling happens).
"""
import gzip
import resource
import sys
import time

import numpy as np
import torch

DATA = "/usr/share/datasets/fashion-mnist/"
COMPILE = "--compile" in sys.argv


def load(name, as_images):
    with gzip.open(DATA + name + "-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).astype(np.float32) / 255.0
    with gzip.open(DATA + name + "-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    x = x.reshape(-1, 1, 28, 28) if as_images else x.reshape(-1, 784)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_for(which):
    nn = torch.nn
    if which == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def make_step(model, opt, loss_fn):
    """One training step, compiled whole (forward, backward, optimizer) with --compile."""
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return torch.compile(step) if COMPILE else step


def train(which, epochs, batch, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    xtr, ytr = load("train", which == "cnn")
    xte, yte = load("t10k", which == "cnn")
    model = model_for(which)
    opt = torch.optim.SGD(model.parameters(), lr=0.05 if which == "cnn" else 0.1, momentum=0.9)
    step = make_step(model, opt, torch.nn.functional.cross_entropy)
    n = xtr.shape[0]
    for i in range(3):  # warm-up (and compilation) on the first batches
        step(xtr[i * batch:(i + 1) * batch], ytr[i * batch:(i + 1) * batch])
    best = float("inf")
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            step(xtr[idx], ytr[idx])
        best = min(best, time.perf_counter() - t0)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    print(f"result workload={which} batch={batch} threads={threads} epoch_s={best:.4f} "
          f"peak_mib={peak_mib():.1f} test_acc={acc:.4f} version={torch.__version__}")


def tiny(steps, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    step = make_step(model, opt, torch.nn.functional.mse_loss)
    for _ in range(20):
        step(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    us = (time.perf_counter() - t0) / steps * 1e6
    print(f"result workload=tiny threads={threads} us_per_step={us:.3f} loss={loss.item():.5f} "
          f"version={torch.__version__}")


def sequence_model(which, seq, vocab=108, embed=64, hidden=128, layers=1, heads=4):
    """The models of examples/char_lm on PyTorch (also bench/references/char_lm.py's): the LSTM
    (embedding, `layers` LSTM layers, a linear head), or the transformer (`layers` pre-norm blocks
    of causal multi-head attention and a GELU MLP, learned positions, for sequences up to
    `seq`), giving (B·L, vocab) logits."""
    nn = torch.nn

    class Lstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
            self.head = nn.Linear(hidden, vocab)

        def forward(self, x):
            return self.head(self.lstm(self.embed(x))[0]).flatten(0, 1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.up, self.down = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)
            self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), 1))

        def forward(self, x):
            h = self.norm1(x)
            n = x.shape[1]
            x = x + self.attention(h, h, h, attn_mask=self.mask[:n, :n], need_weights=False)[0]
            return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, hidden)
            self.position = nn.Parameter(torch.randn(seq, hidden))
            with torch.no_grad():  # N(0, 0.02²), as GPT-2 (and the example)
                self.embed.weight *= 0.02
                self.position *= 0.02
            self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
            self.norm = nn.LayerNorm(hidden)
            self.head = nn.Linear(hidden, vocab)

        def forward(self, x):
            h = self.embed(x) + self.position[:x.shape[1]]
            return self.head(self.norm(self.blocks(h))).flatten(0, 1)

    return Lstm() if which == "lstm" else Transformer()


def sequence(which, seq, steps, threads):
    """bench/workloads.cpp's sequence(): 4,096 random tokens a step, Adam, the median step."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch = max(1, 4096 // seq)
    model = sequence_model(which, seq, layers=1 if which == "lstm" else 2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.randint(0, 108, (batch, seq))
    y = torch.randint(0, 108, (batch * seq,))
    step = make_step(model, opt, torch.nn.functional.cross_entropy)
    for _ in range(3):
        step(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step(x, y)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"result workload={which} seq={seq} batch={batch} threads={threads} "
          f"step_ms={times[len(times) // 2] * 1e3:.3f} peak_mib={peak_mib():.1f} "
          f"loss={loss.item():.4f} version={torch.__version__}")


def gradcheck():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 100, generator=g, dtype=torch.float64)
    w = (0.1 * torch.randn(100, 10, generator=g, dtype=torch.float64)).requires_grad_()
    f = lambda w: torch.tanh(x @ w)
    t0 = time.perf_counter()
    ok_full = torch.autograd.gradcheck(f, (w,), fast_mode=False)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    ok_fast = torch.autograd.gradcheck(f, (w,), fast_mode=True)
    fast = time.perf_counter() - t0
    print(f"result workload=gradcheck full_ms={full * 1e3:.3f} fast_ms={fast * 1e3:.3f} "
          f"passed={int(ok_full and ok_fast)}")


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if a != "--compile"]
    mode = argv[0] if argv else ""
    args = [int(a) for a in argv[1:]]
    if mode in ("mlp", "cnn"):
        train(mode, *(args + [2, 100, 1][len(args):]))
    elif mode == "tiny":
        tiny(*(args + [20000, 1][len(args):]))
    elif mode == "gradcheck":
        gradcheck()
    elif mode == "lstm":
        sequence(mode, 64, *(args + [20, 1][len(args):]))
    elif mode == "transformer":
        sequence(mode, *(args + [64, 20, 1][len(args):]))
    else:
        sys.exit("usage: torch_workloads.py [--compile] mlp|cnn EPOCHS BATCH THREADS | "
                 "tiny STEPS THREADS | gradcheck | lstm STEPS THREADS | "
                 "transformer SEQ STEPS THREADS")
