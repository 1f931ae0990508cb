"""The comparison workloads on JAX, with the whole training step compiled by jax.jit (CPU).

    python jax_workloads.py mlp|cnn EPOCHS BATCH THREADS | tiny STEPS THREADS | gradcheck
    python jax_workloads.py lstm STEPS THREADS | transformer SEQ STEPS THREADS

Installed from PyPI into a Python 3.12 virtual environment by bench/compare --with-references. Prints the
same "result" lines as bench/workloads.cpp. THREADS limits XLA's CPU threads.
"""
import gzip
import os
import resource
import sys
import time

mode = sys.argv[1] if len(sys.argv) > 1 else ""
threads = (int(sys.argv[-1]) if mode in ("mlp", "cnn", "tiny", "lstm", "transformer")
           and len(sys.argv) > 2 else 1)
os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                           f"intra_op_parallelism_threads={threads}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", mode == "gradcheck")
DATA = "/usr/share/datasets/fashion-mnist/"


def load(name, as_images):
    with gzip.open(DATA + name + "-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).astype(np.float32) / 255.0
    with gzip.open(DATA + name + "-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
    return (x.reshape(-1, 28, 28, 1) if as_images else x.reshape(-1, 784)), y


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dense(key, n_in, n_out):
    k1, k2 = jax.random.split(key)
    bound = 1.0 / np.sqrt(n_in)
    return (jax.random.uniform(k1, (n_in, n_out), minval=-bound, maxval=bound),
            jax.random.uniform(k2, (n_out,), minval=-bound, maxval=bound))


def conv(key, c_in, c_out):
    k1, k2 = jax.random.split(key)
    bound = 1.0 / np.sqrt(c_in * 9)
    return (jax.random.uniform(k1, (3, 3, c_in, c_out), minval=-bound, maxval=bound),
            jax.random.uniform(k2, (c_out,), minval=-bound, maxval=bound))


def init(which, key):
    keys = jax.random.split(key, 4)
    if which == "cnn":
        return [conv(keys[0], 1, 32), conv(keys[1], 32, 64), dense(keys[2], 3136, 128),
                dense(keys[3], 128, 10)]
    return [dense(keys[0], 784, 256), dense(keys[1], 256, 128), dense(keys[2], 128, 10)]


def forward(which, params, x):
    if which == "cnn":
        for w, b in params[:2]:
            x = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
            x = jax.nn.relu(x)
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = x.reshape(x.shape[0], -1)
        rest = params[2:]
    else:
        rest = params
    for w, b in rest[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = rest[-1]
    return x @ w + b


def train(which, epochs, batch, threads):
    xtr, ytr = load("train", which == "cnn")
    xte, yte = load("t10k", which == "cnn")
    params = init(which, jax.random.PRNGKey(0))
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
    lr = 0.05 if which == "cnn" else 0.1

    def loss(params, x, y):
        logits = forward(which, params, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    @jax.jit
    def step(params, velocity, x, y):
        g = jax.grad(loss)(params, x, y)
        velocity = jax.tree_util.tree_map(lambda v, g: 0.9 * v + g, velocity, g)
        params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity

    n = xtr.shape[0]
    rng = np.random.default_rng(0)
    best = float("inf")
    for e in range(epochs):
        perm = rng.permutation(n)
        t0 = time.perf_counter()
        for i in range(0, n - batch + 1, batch):  # full batches: one compiled shape
            idx = perm[i:i + batch]
            params, velocity = step(params, velocity, xtr[idx], ytr[idx])
        jax.block_until_ready(params)
        best = min(best, time.perf_counter() - t0)
    acc = float(jnp.mean(jnp.argmax(forward(which, params, xte), 1) == yte))
    print(f"result workload={which} batch={batch} threads={threads} epoch_s={best:.4f} "
          f"peak_mib={peak_mib():.1f} test_acc={acc:.4f} version={jax.__version__}")


def tiny(steps, threads):
    key = jax.random.PRNGKey(0)
    ks = jax.random.split(key, 5)
    params = [dense(ks[0], 2, 16), dense(ks[1], 16, 16), dense(ks[2], 16, 1)]
    x, y = jax.random.normal(ks[3], (8, 2)), jax.random.normal(ks[4], (8, 1))

    def loss(params):
        h = x
        for w, b in params[:-1]:
            h = jnp.tanh(h @ w + b)
        w, b = params[-1]
        return jnp.mean((h @ w + b - y) ** 2)

    @jax.jit
    def step(params):
        value, g = jax.value_and_grad(loss)(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, params, g), value

    params, value = step(params)
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    for _ in range(steps):
        params, value = step(params)
    jax.block_until_ready(params)
    us = (time.perf_counter() - t0) / steps * 1e6
    print(f"result workload=tiny threads={threads} us_per_step={us:.3f} loss={float(value):.5f} "
          f"version={jax.__version__}")


def sequence(which, seq, steps, threads):
    """bench/workloads.cpp's sequence(): char_lm's LSTM (lax.scan) or transformer (causal
    jax.nn.dot_product_attention), 4,096 random tokens a step, Adam, the median step."""
    vocab, batch = 108, max(1, 4096 // seq)
    ks = iter(jax.random.split(jax.random.PRNGKey(0), 32))

    def uniform(shape, bound):
        return jax.random.uniform(next(ks), shape, minval=-bound, maxval=bound)

    def layer_norm(x, p):
        m = jnp.mean(x, -1, keepdims=True)
        v = jnp.mean((x - m) ** 2, -1, keepdims=True)
        return (x - m) / jnp.sqrt(v + 1e-5) * p[0] + p[1]

    if which == "lstm":
        h = 128
        params = {"embed": jax.random.normal(next(ks), (vocab, 64)),
                  "w_ih": uniform((64, 4 * h), h ** -0.5), "w_hh": uniform((h, 4 * h), h ** -0.5),
                  "b": uniform((4 * h,), h ** -0.5), "head": dense(next(ks), h, vocab)}

        def forward(p, x):
            xw = p["embed"][x] @ p["w_ih"] + p["b"]  # (B, L, 4H)

            def cell(carry, g):
                hs, cs = carry
                g = g + hs @ p["w_hh"]
                i, f, n, o = jnp.split(g, 4, axis=-1)
                cs = jax.nn.sigmoid(f) * cs + jax.nn.sigmoid(i) * jnp.tanh(n)
                hs = jax.nn.sigmoid(o) * jnp.tanh(cs)
                return (hs, cs), hs

            zero = jnp.zeros((x.shape[0], h))
            _, hs = jax.lax.scan(cell, (zero, zero), jnp.swapaxes(xw, 0, 1))
            w, b = p["head"]
            return (jnp.swapaxes(hs, 0, 1) @ w + b).reshape(-1, vocab)
    else:
        d, heads = 128, 4

        def block():
            return {"norm1": (jnp.ones(d), jnp.zeros(d)), "norm2": (jnp.ones(d), jnp.zeros(d)),
                    "qkv": dense(next(ks), d, 3 * d), "out": dense(next(ks), d, d),
                    "up": dense(next(ks), d, 4 * d), "down": dense(next(ks), 4 * d, d)}

        params = {"embed": 0.02 * jax.random.normal(next(ks), (vocab, d)),
                  "position": 0.02 * jax.random.normal(next(ks), (seq, d)),
                  "blocks": [block(), block()], "norm": (jnp.ones(d), jnp.zeros(d)),
                  "head": dense(next(ks), d, vocab)}

        def forward(p, x):
            h = p["embed"][x] + p["position"]
            n = x.shape[0]
            for b in p["blocks"]:
                a = layer_norm(h, b["norm1"])
                q, k, v = jnp.split(a @ b["qkv"][0] + b["qkv"][1], 3, axis=-1)
                q, k, v = (t.reshape(n, seq, heads, d // heads) for t in (q, k, v))
                o = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(n, seq, d)
                h = h + o @ b["out"][0] + b["out"][1]
                m = jax.nn.gelu(layer_norm(h, b["norm2"]) @ b["up"][0] + b["up"][1],
                                approximate=False)
                h = h + m @ b["down"][0] + b["down"][1]
            w, bias = p["head"]
            return (layer_norm(h, p["norm"]) @ w + bias).reshape(-1, vocab)

    def loss(p, x, y):
        logits = forward(p, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    b1, b2, lr, eps = 0.9, 0.999, 2e-3, 1e-8

    @jax.jit
    def step(p, m, v, t, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), p, m, v)
        return p, m, v, t, value

    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, vocab, (batch, seq)), jnp.int32)
    y = jnp.asarray(rng.integers(0, vocab, (batch * seq,)), jnp.int32)
    for _ in range(3):
        params, m, v, t, value = step(params, m, v, t, x, y)
    jax.block_until_ready(params)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        params, m, v, t, value = step(params, m, v, t, x, y)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"result workload={which} seq={seq} batch={batch} threads={threads} "
          f"step_ms={times[len(times) // 2] * 1e3:.3f} peak_mib={peak_mib():.1f} "
          f"loss={float(value):.4f} version={jax.__version__}")


def gradcheck():
    from jax.test_util import check_grads
    key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)
    x = jax.random.normal(k1, (1, 100), dtype=jnp.float64)
    w = 0.1 * jax.random.normal(k2, (100, 10), dtype=jnp.float64)
    f = lambda w: jnp.tanh(x @ w)
    t0 = time.perf_counter()
    check_grads(f, (w,), order=1, modes=["rev"])  # random directions only: JAX has no full mode
    fast = time.perf_counter() - t0
    print(f"result workload=gradcheck full_ms=nan fast_ms={fast * 1e3:.3f} passed=1")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[2:]]
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
        sys.exit("usage: jax_workloads.py mlp|cnn EPOCHS BATCH THREADS | tiny STEPS THREADS | "
                 "gradcheck | lstm STEPS THREADS | transformer SEQ STEPS THREADS")
