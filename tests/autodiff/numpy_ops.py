#!/usr/bin/env python3
"""NumPy references of the library's ops, for tests/autodiff/test_ops.cpp.

Usage: numpy_ops.py MANIFEST. Each line of MANIFEST is a JSON object {"op": name, "inputs": [.npy
paths], "args": {keyword arguments}, "out": .npy path}; the reference of op `name` (a function
below, written with NumPy alone, independently of the library) is applied to the inputs and saved
to `out` in float64. Errors name the line.
"""
import builtins
import json
import math
import sys

import numpy as np


def _axes(a, axes):
    return None if not axes else tuple(int(x) % a.ndim for x in axes)


def _lse(a, axis, keepdims):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    s = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


# Elementwise

def add(a, b): return a + b
def sub(a, b): return a - b
def mul(a, b): return a * b
def div(a, b): return a / b
def neg(a): return -a
def affine(a, scale, shift): return a * scale + shift
def pow(a, b): return np.power(a, b)
def pow_scalar(a, p): return np.power(a, p)
def where(mask, a, b): return np.where(mask != 0, a, b)
def maximum(a, b): return np.maximum(a, b)
def minimum(a, b): return np.minimum(a, b)
def exp(a): return np.exp(a)
def log(a): return np.log(a)
def sqrt(a): return np.sqrt(a)
def abs(a): return np.abs(a)
def tanh(a): return np.tanh(a)
def sigmoid(a): return 1.0 / (1.0 + np.exp(-a))
def relu(a): return np.maximum(a, 0.0)
def leaky_relu(a, slope): return np.where(a > 0, a, slope * a)
def softplus(a): return np.logaddexp(0.0, a)
def clamp(a, lo, hi): return np.clip(a, lo, hi)
def erf(a): return np.vectorize(math.erf, otypes=[np.float64])(a)
def square(a): return a * a
def sin(a): return np.sin(a)
def cos(a): return np.cos(a)
def elu(a, alpha=1.0): return np.where(a > 0, a, alpha * np.expm1(a))
def hardtanh(a, lo=-1.0, hi=1.0): return np.clip(a, lo, hi)
def silu(a): return a / (1.0 + np.exp(-a))
def mish(a): return a * np.tanh(np.logaddexp(0.0, a))
def logsigmoid(a): return -np.logaddexp(0.0, -a)


# Products

def matmul(a, b, trans_a=False, trans_b=False):
    if trans_a: a = np.swapaxes(a, -1, -2)
    if trans_b: b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def linear(x, w, b=None, activation=None):
    y = x @ w.T
    if b is not None: y = y + b
    return {None: lambda v: v, "relu": relu, "tanh": tanh, "sigmoid": sigmoid}[activation](y)


def _windows(n, k, stride, pad, h, w):
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    return ho, wo


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _conv_taps(x_hw, k_hw, stride, padding, dilation):
    """For each kernel tap (p, q): the slices of the padded input that it reads (builtins.slice:
    this module's `slice` is the op)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    (h, w), (kh, kw) = x_hw, k_hw
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for p in range(kh):
        for q in range(kw):
            yield p, q, (builtins.slice(p * dh, p * dh + sh * (ho - 1) + 1, sh),
                         builtins.slice(q * dw, q * dw + sw * (wo - 1) + 1, sw))


def _groups(c, o, groups):
    """(input channel slice, output channel slice) of each group."""
    cg, og = c // groups, o // groups
    return [(builtins.slice(i * cg, (i + 1) * cg), builtins.slice(i * og, (i + 1) * og)) for i in range(groups)]


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ph, pw = _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = None
    for p, q, (rows, cols) in _conv_taps((h, wd), (kh, kw), stride, padding, dilation):
        patch = xp[:, :, rows, cols]
        if out is None:
            out = np.zeros((n, o) + patch.shape[2:])
        for ci, oi in _groups(c, o, groups):
            out[:, oi] += np.einsum('nchw,oc->nohw', patch[:, ci], w[oi, :, p, q])
    return out if b is None else out + b[None, :, None, None]


def conv2d_input_grad(g, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    ph, pw = _pair(padding)
    dxp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    for p, q, (rows, cols) in _conv_taps((h, wd), (kh, kw), stride, padding, dilation):
        for ci, oi in _groups(c, o, groups):
            dxp[:, ci, rows, cols] += np.einsum('nohw,oc->nchw', g[:, oi], w[oi, :, p, q])
    return dxp[:, :, ph:ph + h, pw:pw + wd]


def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0, dilation=1, groups=1):
    n, c, h, wd = x.shape
    o, _, kh, kw = w_shape
    ph, pw = _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dw = np.zeros(w_shape)
    for p, q, (rows, cols) in _conv_taps((h, wd), (kh, kw), stride, padding, dilation):
        patch = xp[:, :, rows, cols]
        for ci, oi in _groups(c, o, groups):
            dw[oi, :, p, q] = np.einsum('nchw,nohw->oc', patch[:, ci], g[:, oi])
    return dw


def _pool_patches(x, k, stride, padding, fill):
    n, c, h, w = x.shape
    ho, wo = _windows(n, k, stride, padding, h, w)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    return np.stack([xp[:, :, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride]
                     for p in range(k) for q in range(k)])


def max_pool2d(x, kernel, stride, padding=0):
    return np.max(_pool_patches(x, kernel, stride, padding, -np.inf), axis=0)


def avg_pool2d(x, kernel, stride, padding=0):
    return np.sum(_pool_patches(x, kernel, stride, padding, 0.0), axis=0) / kernel ** 2


def avg_pool2d_grad(g, x_shape, kernel, stride, padding=0):
    n, c, h, w = x_shape
    ho, wo = g.shape[2], g.shape[3]
    dxp = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
    for p in range(kernel):
        for q in range(kernel):
            dxp[:, :, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride] += \
                g / kernel ** 2
    return dxp[:, :, padding:padding + h, padding:padding + w]


# Shapes

def reshape(a, shape): return np.reshape(a, shape)


def flatten(a, start=0, end=-1):
    if a.ndim == 0: return a.reshape(1)
    s, e = start % a.ndim, end % a.ndim
    return a.reshape(a.shape[:s] + (-1,) + a.shape[e + 1:]) if a.size else \
        a.reshape(a.shape[:s] + (int(np.prod(a.shape[s:e + 1])),) + a.shape[e + 1:])


def permute(a, axes): return np.transpose(a, axes)
def transpose(a, axis0=-2, axis1=-1): return np.swapaxes(a, axis0, axis1)


def slice(a, axis, start, stop, step=1):
    index = [np.s_[:]] * a.ndim
    index[axis % a.ndim] = np.s_[start:stop:step]
    return a[tuple(index)]


def unslice(a, shape, axis, start, step=1):
    out = np.zeros(shape)
    index = [np.s_[:]] * len(shape)
    ax = axis % len(shape)
    index[ax] = np.s_[start:start + step * a.shape[ax]:step]
    out[tuple(index)] = a
    return out


def select(a, axis, index):
    return np.take(a, index, axis=axis)


def index_select(a, axis, indices):
    return np.take(a, np.asarray(indices, dtype=np.int64), axis=axis)


def index_add(a, shape, axis, indices):
    out = np.zeros(shape)
    ax = axis % len(shape)
    np.add.at(np.moveaxis(out, ax, 0), np.asarray(indices, dtype=np.int64), np.moveaxis(a, ax, 0))
    return out


def gather(a, axis, index):
    return np.take_along_axis(a, np.asarray(index, dtype=np.int64), axis=axis)


def scatter_add(a, shape, axis, index):
    out = np.zeros(shape)
    index = np.asarray(index, dtype=np.int64)
    grids = list(np.indices(index.shape, sparse=True))
    grids[axis % len(shape)] = index
    np.add.at(out, tuple(grids), a)
    return out


def embedding(table, ids, ids_shape):
    return np.take(table, np.reshape(np.asarray(ids, dtype=np.int64), ids_shape), axis=0)


def gather_flat(a, axis, index, index_shape):
    return gather(a, axis, np.reshape(index, index_shape))


def scatter_add_flat(a, shape, axis, index, index_shape):
    return scatter_add(a, shape, axis, np.reshape(index, index_shape))


def concatenate(*parts, axis=0): return np.concatenate(parts, axis=axis)
def stack(*parts, axis=0): return np.stack(parts, axis=axis)
def broadcast_to(a, shape): return np.broadcast_to(a, shape)


def sum_to(a, shape):
    lead = a.ndim - len(shape)
    s = np.sum(a, axis=tuple(range(lead))) if lead else a
    axes = tuple(d for d in range(len(shape)) if shape[d] == 1 and s.shape[d] != 1)
    return np.sum(s, axis=axes, keepdims=True) if axes else s


# Reductions and the softmax family

def sum(a, axes=(), keepdims=False): return np.sum(a, axis=_axes(a, axes), keepdims=keepdims)
def mean(a, axes=(), keepdims=False): return np.mean(a, axis=_axes(a, axes), keepdims=keepdims)
def max(a, axes=(), keepdims=False): return np.max(a, axis=_axes(a, axes), keepdims=keepdims)
def min(a, axes=(), keepdims=False): return np.min(a, axis=_axes(a, axes), keepdims=keepdims)


def log_sum_exp(a, axes=(), keepdims=False):
    return _lse(a, _axes(a, axes) or tuple(range(a.ndim)), keepdims)


def log_softmax(a, axis=-1): return a - _lse(a, axis, True)
def softmax(a, axis=-1): return np.exp(log_softmax(a, axis))
def squared_distance(a, b, scale=1.0): return scale * np.sum((a - b) ** 2)


def var(a, axes=(), correction=1.0, keepdims=False):
    return np.var(a, axis=_axes(a, axes), ddof=correction, keepdims=keepdims)


def std(a, axes=(), correction=1.0, keepdims=False):
    return np.std(a, axis=_axes(a, axes), ddof=correction, keepdims=keepdims)


def norm(a, p=2.0, axes=(), keepdims=False):
    ax = _axes(a, axes)
    if p == "inf": return np.max(np.abs(a), axis=ax, keepdims=keepdims)
    return np.sum(np.abs(a) ** p, axis=ax, keepdims=keepdims) ** (1.0 / p)


def cumsum(a, axis, reverse=False):
    if not reverse: return np.cumsum(a, axis=axis)
    return np.flip(np.cumsum(np.flip(a, axis=axis), axis=axis), axis=axis)


def argmax(a, axis, keepdims=False): return np.argmax(a, axis=axis, keepdims=keepdims)
def argmin(a, axis, keepdims=False): return np.argmin(a, axis=axis, keepdims=keepdims)


def lstm_cell(input_gates, hidden_gates, c):
    gates = input_gates + hidden_gates
    h = c.shape[1]
    i, f, g, o = (gates[:, k * h:(k + 1) * h] for k in range(4))
    c2 = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return np.concatenate([sigmoid(o) * np.tanh(c2), c2], axis=1)


def softmax_cross_entropy(z, labels, label_smoothing=0.0):
    n, k = z.shape
    t = np.full((n, k), label_smoothing / k)
    t[np.arange(n), np.asarray(labels, dtype=np.int64)] += 1 - label_smoothing
    return _lse(z, 1, False) - np.sum(t * z, axis=1)


# Sequence models

def gelu(a, approximate="none"):
    if approximate == "tanh":
        return 0.5 * a * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a ** 3)))
    return 0.5 * a * (1.0 + erf(a / math.sqrt(2.0)))


def layer_norm(x, *weight_and_bias, axes=1, eps=1e-5, affine=False, shift=False):
    last = tuple(range(x.ndim - axes, x.ndim))
    centred = x - np.mean(x, axis=last, keepdims=True)
    y = centred / np.sqrt(np.mean(centred ** 2, axis=last, keepdims=True) + eps)
    if affine:
        y = y * weight_and_bias[0]
    if shift:
        y = y + weight_and_bias[-1]
    return y


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=0.0, heads=1):
    lead, lq, lk = q.shape[:-2], q.shape[-2], k.shape[-2]
    d, dv = q.shape[-1] // heads, v.shape[-1] // heads

    def split(x, width):  # (..., L, H·w) -> (..., H, L, w)
        return np.moveaxis(x.reshape(lead + (x.shape[-2], heads, width)), -2, -3)

    s = split(q, d) @ np.swapaxes(split(k, d), -1, -2) * (scale or 1.0 / math.sqrt(d))
    if mask is not None:  # mask broadcasts to (..., H, Lq, Lk), or (..., Lq, Lk) for one head
        s = s + (np.expand_dims(mask, -3) if heads == 1 and mask.ndim >= 2 else mask)
    if causal:
        s = np.where(np.triu(np.ones((lq, lk), dtype=bool), 1), -np.inf, s)
    p = np.exp(s - np.max(s, axis=-1, keepdims=True))
    p = p / np.sum(p, axis=-1, keepdims=True)
    out = p @ split(v, dv)  # (..., H, Lq, dv)
    return np.moveaxis(out, -3, -2).reshape(lead + (lq, heads * dv))


def lstm(x, w_ih, w_hh, *rest, biased=False):
    b_ih, b_hh, h, c = rest if biased else (0.0, 0.0) + rest
    hidden = h.shape[1]
    out = []
    for t in range(x.shape[1]):
        g = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f = sigmoid(g[:, :hidden]), sigmoid(g[:, hidden:2 * hidden])
        n, o = np.tanh(g[:, 2 * hidden:3 * hidden]), sigmoid(g[:, 3 * hidden:])
        c = f * c + i * n
        h = o * np.tanh(c)
        out.append(h)
    out.append(c)
    return np.stack(out, axis=1)


def main():
    with open(sys.argv[1]) as manifest:
        for number, line in enumerate(manifest, 1):
            case = json.loads(line)
            try:
                inputs = [np.load(p) for p in case["inputs"]]
                with np.errstate(all="ignore"):
                    out = globals()[case["op"]](*inputs, **case["args"])
                np.save(case["out"], np.asarray(out, dtype=np.float64))
            except Exception as e:
                sys.exit(f"numpy_ops.py: line {number} ({case['op']}): {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
