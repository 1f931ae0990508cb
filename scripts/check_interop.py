#!/usr/bin/env python3
"""Checks the interop part against the reference implementations (not run in CI: it needs
ONNX Runtime and safetensors from PyPI, and PyTorch):

1. The example models (fashion_mnist's MLP and CNN, char_lm's LSTM and transformer), trained
   briefly and exported with --export-onnx, give ONNX Runtime's outputs on their test data.
2. ResNet-18 from torchvision (random weights, exported with torch.onnx) through onnx_run: its
   outputs and the gradients of every parameter against PyTorch's autograd.
3. A Fashion-MNIST MLP trained in PyTorch, exported, evaluated by onnx_run on the test set: the
   same accuracy.
4. safetensors both ways with PyTorch's state_dict (and the safetensors package).

Usage: scripts/check_interop.py [BUILD_DIR]   (default build/release; run scripts/interop-venv
first, or any Python with torch, torchvision, onnx, onnxruntime and safetensors)
"""
import gzip
import os
import subprocess
import sys
import tempfile

import numpy as np

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/release")
EXAMPLES = os.path.join(BUILD, "examples")
DATA = "/usr/share/datasets/fashion-mnist"
failures = []


def run(*args):
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def report(what, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")
    if not ok:
        failures.append(what)


def relative(a, b):
    """max |a - b| over max |b| (the outputs' scale), and the max |a - b|."""
    diff = np.max(np.abs(a - b)) if a.size else 0.0
    return diff / max(np.max(np.abs(b)), 1e-30), diff


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(raw[4 + 4 * dims :], dtype=np.uint8).reshape(shape)


def check_examples(work):
    import onnxruntime as ort

    runs = {
        "fashion_mnist mlp": ["fashion_mnist", "--model", "mlp", "--epochs", "1", "--limit", "6000"],
        "fashion_mnist cnn": ["fashion_mnist", "--model", "cnn", "--epochs", "1", "--limit", "2000"],
        "char_lm lstm": ["char_lm", "--model", "lstm", "--epochs", "1", "--limit", "50000", "--sample", "0"],
        "char_lm transformer": ["char_lm", "--model", "transformer", "--epochs", "1", "--limit", "30000",
                                "--hidden", "64", "--layers", "2", "--sample", "0"],
    }
    for name, cmd in runs.items():
        path = os.path.join(work, name.replace(" ", "_") + ".onnx")
        run(os.path.join(EXAMPLES, cmd[0]), *cmd[1:], "--export-onnx", path)
        expected = np.load(path + ".expected.npz")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {"x": expected["x"]})[0]
        rel, diff = relative(got, expected["output"])
        report(f"ONNX Runtime on {name}", rel <= 1e-5,
               f"outputs {got.shape}, max |difference| {diff:.3g}, relative to the largest output {rel:.3g}")


def check_resnet(work):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    # Random BatchNorm parameters and statistics, as a trained model has: the exporter merges
    # initializers of equal values (the fresh ones and zeros), whose gradients would then add up.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    path = os.path.join(work, "resnet18.onnx")
    torch.onnx.export(model, x, path, input_names=["x"], output_names=["logits"],
                      opset_version=13, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE)
    np.save(os.path.join(work, "x.npy"), x.numpy())
    out = os.path.join(work, "resnet_out.npz")
    run(os.path.join(EXAMPLES, "onnx_run"), path, "--input", "x=" + os.path.join(work, "x.npy"),
        "--output", out, "--grad")
    ours = np.load(out)
    xg = x.clone().requires_grad_(True)
    y = model(xg)
    y.sum().backward()
    rel, diff = relative(ours["logits"], y.detach().numpy())
    report("ResNet-18 forward against PyTorch", rel <= 1e-4, f"max |difference| {diff:.3g}, relative {rel:.3g}")
    worst, worst_name, count = 0.0, "", 0
    for name, p in model.named_parameters():
        key = "grad/" + name
        if key not in ours:
            report("ResNet-18 gradient names", False, f"{key} missing")
            continue
        r, _ = relative(ours[key], p.grad.numpy())
        count += 1
        if r > worst:
            worst, worst_name = r, name
    r, _ = relative(ours["grad/x"], xg.grad.numpy())
    report("ResNet-18 parameter gradients against PyTorch autograd", worst <= 1e-4,
           f"{count} parameters, worst relative difference {worst:.3g} ({worst_name}); input gradient {r:.3g}")
    # One SGD step from those gradients (on the parameters, not the BatchNorm statistics; the rate
    # moves the largest entry by 1e-3), loaded back through safetensors and run: the logits after
    # the step against PyTorch's after its own step.
    from safetensors.numpy import save_file

    lr = 1e-3 / max(float(np.max(np.abs(ours["grad/" + n]))) for n, _ in model.named_parameters())
    stepped = {name: (p.detach().numpy() - lr * ours["grad/" + name]).astype(np.float32)
               for name, p in model.named_parameters()}
    save_file(stepped, os.path.join(work, "resnet_step.safetensors"))
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
        after = model(x).numpy()
    out2 = os.path.join(work, "resnet_after.npz")
    run(os.path.join(EXAMPLES, "onnx_run"), path, "--input", "x=" + os.path.join(work, "x.npy"),
        "--load-safetensors", os.path.join(work, "resnet_step.safetensors"), "--output", out2)
    rel, diff = relative(np.load(out2)["logits"], after)
    moved, _ = relative(after, y.detach().numpy())
    report("ResNet-18 after one SGD step against PyTorch's step", rel <= 1e-4,
           f"the step moved the logits by {moved:.3g} (relative); after it, max |difference| "
           f"{diff:.3g}, relative {rel:.3g}")


def check_pytorch_lstm(work):
    """PyTorch's nn.LSTM exports as ONNX's LSTM op: 2 layers, both directions, batch first."""
    import torch

    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(14, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    model = Model().eval()
    x = torch.randn(4, 6, 5)
    path = os.path.join(work, "torch_lstm.onnx")
    torch.onnx.export(model, x, path, input_names=["x"], output_names=["y"], opset_version=14)
    np.save(os.path.join(work, "lstm_x.npy"), x.numpy())
    out = os.path.join(work, "lstm_out.npz")
    run(os.path.join(EXAMPLES, "onnx_run"), path, "--input", "x=" + os.path.join(work, "lstm_x.npy"),
        "--output", out, "--grad")
    ours = np.load(out)
    xg = x.clone().requires_grad_(True)
    y = model(xg)
    y.sum().backward()
    rel, diff = relative(ours["y"], y.detach().numpy())
    rel_g, _ = relative(ours["grad/x"], xg.grad.numpy())
    report("a PyTorch LSTM (2 layers, bidirectional) forward and input gradient", max(rel, rel_g) <= 1e-5,
           f"outputs max |difference| {diff:.3g} (relative {rel:.3g}); input gradient relative {rel_g:.3g}")


def check_pytorch_mlp(work):
    import torch

    torch.manual_seed(0)
    train_x = torch.tensor(idx("train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    train_y = torch.tensor(idx("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    test_x = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    test_y = idx("t10k-labels-idx1-ubyte.gz")
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(2):
        perm = torch.randperm(len(train_x))
        for k in range(0, len(perm), 100):
            b = perm[k : k + 100]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(train_x[b]), train_y[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        theirs = model(torch.tensor(test_x)).numpy()
    path = os.path.join(work, "torch_mlp.onnx")
    torch.onnx.export(model, torch.tensor(test_x[:2]), path, input_names=["x"], output_names=["logits"],
                      opset_version=13, dynamic_axes={"x": {0: "batch"}})
    np.save(os.path.join(work, "test_x.npy"), test_x)
    out = os.path.join(work, "torch_mlp_out.npz")
    run(os.path.join(EXAMPLES, "onnx_run"), path, "--input", os.path.join(work, "test_x.npy"), "--output", out)
    ours = np.load(out)["logits"]
    acc_theirs = np.mean(theirs.argmax(1) == test_y)
    acc_ours = np.mean(ours.argmax(1) == test_y)
    rel, diff = relative(ours, theirs)
    report("a PyTorch-trained Fashion-MNIST MLP on the 10,000 test images", acc_ours == acc_theirs,
           f"accuracy {acc_ours:.4f} here, {acc_theirs:.4f} in PyTorch; logits max |difference| {diff:.3g}")
    return model, path, test_x


def check_safetensors(work, model, onnx_path, test_x):
    import torch
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    # PyTorch's state_dict in, through the safetensors package: the same outputs.
    fresh = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(fresh)
    path = os.path.join(work, "from_torch.safetensors")
    save_file({k: v.contiguous() for k, v in fresh.items()}, path)
    out = os.path.join(work, "st_out.npz")
    run(os.path.join(EXAMPLES, "onnx_run"), onnx_path, "--input", os.path.join(work, "test_x.npy"),
        "--load-safetensors", path, "--output", out)
    with torch.no_grad():
        theirs = model(torch.tensor(test_x)).numpy()
    rel, diff = relative(np.load(out)["logits"], theirs)
    report("safetensors from PyTorch's state_dict", rel <= 1e-5, f"outputs max |difference| {diff:.3g}")
    # And out: the file reads in the safetensors package and loads into PyTorch's state_dict.
    back = os.path.join(work, "to_torch.safetensors")
    run(os.path.join(EXAMPLES, "onnx_run"), onnx_path, "--input", os.path.join(work, "test_x.npy"),
        "--load-safetensors", path, "--save-safetensors", back)
    tensors = load_file(back)
    same = all(np.array_equal(tensors[k], v.numpy()) for k, v in fresh.items())
    model.load_state_dict({k: torch.tensor(v) for k, v in tensors.items()})
    report("safetensors to PyTorch's state_dict", same and set(tensors) == set(fresh),
           f"{len(tensors)} tensors, equal to the ones loaded: {same}")


def main():
    with tempfile.TemporaryDirectory() as work:
        check_examples(work)
        check_resnet(work)
        check_pytorch_lstm(work)
        model, path, test_x = check_pytorch_mlp(work)
        check_safetensors(work, model, path, test_x)
    print(f"{len(failures)} failed" if failures else "all interop checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
