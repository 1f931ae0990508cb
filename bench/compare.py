"""Runs the comparison workloads on this library and on the references (LibTorch, PyTorch, JAX
with jax.jit), alternating them, and prints medians and ratios. Called by bench/compare.

Each program prints "result key=value ..." lines; see bench/workloads.cpp.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "bench")
VENV = os.path.join(BUILD, "venv")
OURS = os.path.join(BUILD, "bench", "workloads")
LIBTORCH = os.path.join(BUILD, "libtorch", "libtorch_workloads")
REFS = os.path.join(ROOT, "bench", "references")
DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def sudo():
    return [] if os.geteuid() == 0 else ["sudo"]


def install_references():
    """LibTorch and PyTorch from Debian, JAX from PyPI into a virtual environment."""
    sh(sudo() + ["apt-get", "update", "-q"])
    sh(sudo() + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                 "--no-install-recommends", "libtorch-dev", "python3-torch", "zlib1g-dev",
                 "python3-venv"])
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        sh(["/usr/bin/python3", "-m", "venv", VENV])
    sh([os.path.join(VENV, "bin", "pip"), "install", "-q", "jax[cpu]"])


def build_libtorch():
    try:
        sh(["cmake", "-S", os.path.join(REFS, "libtorch"), "-B", os.path.join(BUILD, "libtorch"),
            "-DCMAKE_BUILD_TYPE=Release"], stdout=subprocess.DEVNULL)
        sh(["cmake", "--build", os.path.join(BUILD, "libtorch"), "-j2"], stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        print("LibTorch reference: not built (is libtorch-dev installed?)", file=sys.stderr)


def importable(python, module):
    return subprocess.run([python, "-c", "import " + module], capture_output=True).returncode == 0


def programs():
    """The sides that can run here: name -> command prefix."""
    sides = {"ours": [OURS]}
    if os.path.exists(LIBTORCH):
        sides["libtorch"] = [LIBTORCH]
    if importable("/usr/bin/python3", "torch"):
        sides["pytorch"] = ["/usr/bin/python3", os.path.join(REFS, "torch_workloads.py")]
    venv_python = os.path.join(VENV, "bin", "python")
    if os.path.exists(venv_python) and importable(venv_python, "jax"):
        sides["jax"] = [venv_python, os.path.join(REFS, "jax_workloads.py")]
    return sides


def run(cmd, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("result "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    print(f"  failed: {' '.join(cmd)}\n{p.stdout[-800:]}{p.stderr[-800:]}", file=sys.stderr)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--with-references", action="store_true",
                    help="install LibTorch, PyTorch (Debian) and JAX (PyPI, in a venv) first")
    ap.add_argument("--runs", type=int, default=3, help="runs of each measurement (medians)")
    ap.add_argument("--threads", default="1,2", help="thread counts to try")
    ap.add_argument("--workloads", default="mlp,mlp1000,cnn,tiny,gradcheck")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per MLP run (the best is kept)")
    ap.add_argument("--cnn-epochs", type=int, default=1)
    ap.add_argument("--json", default=os.path.join(BUILD, "compare.json"))
    args = ap.parse_args()

    if args.with_references:
        install_references()
    build_libtorch()
    sides = programs()
    missing = [s for s in ("libtorch", "pytorch", "jax") if s not in sides]
    if missing:
        print(f"references absent: {', '.join(missing)} (bench/compare --with-references installs "
              "them)")
    threads = [int(t) for t in args.threads.split(",")]
    workloads = args.workloads.split(",")

    jobs = []  # (label, mode args, threads)
    for w in workloads:
        for t in threads:
            if w == "mlp":
                jobs.append((f"mlp b100 t{t}", ["mlp", str(args.epochs), "100", str(t)], t))
            elif w == "mlp1000":
                jobs.append((f"mlp b1000 t{t}", ["mlp", str(args.epochs), "1000", str(t)], t))
            elif w == "cnn":
                jobs.append((f"cnn b100 t{t}", ["cnn", str(args.cnn_epochs), "100", str(t)], t))
            elif w == "tiny":
                jobs.append((f"tiny t{t}", ["tiny", "20000", str(t)], t))
        if w == "gradcheck":
            jobs.append(("gradcheck", ["gradcheck"], 1))

    results = {}  # label -> side -> list of result dicts
    limits = {}
    for r in range(args.runs):
        for t in threads:  # the arithmetic limit, measured in the same run
            res = subprocess.run([OURS, "sgemm", str(t)], capture_output=True, text=True).stdout
            for line in res.splitlines():
                kv = dict(x.split("=", 1) for x in line.split()[1:])
                limits.setdefault((kv["batch"], t), []).append(float(kv["epoch_s"]))
        for label, mode, t in jobs:
            for side, cmd in sides.items():  # alternating sides, run after run
                if mode[0] == "gradcheck" and side == "libtorch":
                    continue  # the LibTorch reference has no gradcheck (PyTorch's is the reference)
                print(f"run {r + 1}/{args.runs}: {label} {side}", file=sys.stderr)
                out = run(cmd + mode, t)
                if out:
                    results.setdefault(label, {}).setdefault(side, []).append(out)

    def med(label, side, key):
        vals = [float(x[key]) for x in results.get(label, {}).get(side, []) if x.get(key, "nan") != "nan"]
        return statistics.median(vals) if vals else None

    def fmt(v, digits=3):
        return "—" if v is None else f"{v:.{digits}g}"

    names = ["ours", "libtorch", "pytorch", "jax"]
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, medians of {args.runs} runs\n")
    print("| workload | " + " | ".join(names) + " | ours / LibTorch | ours / JAX | limit | ours / limit | peak MiB (ours, LibTorch) |")
    print("|---" * (len(names) + 6) + "|")
    for label, mode, t in jobs:
        key = {"tiny": "us_per_step", "gradcheck": "full_ms"}.get(mode[0], "epoch_s")
        vals = {s: med(label, s, key) for s in names}
        ratio = lambda a, b: fmt(a / b, 2) if a and b else "—"
        limit = None
        if mode[0] == "mlp":
            limit = statistics.median(limits.get((mode[2], t), [float("nan")]))
        unit = {"epoch_s": "s/epoch", "us_per_step": "µs/step", "full_ms": "ms (full)"}[key]
        peak = f"{fmt(med(label, 'ours', 'peak_mib'), 4)}, {fmt(med(label, 'libtorch', 'peak_mib'), 4)}" if key == "epoch_s" else ""
        print(f"| {label} ({unit}) | " + " | ".join(fmt(vals[s]) for s in names) +
              f" | {ratio(vals['ours'], vals['libtorch'])} | {ratio(vals['ours'], vals['jax'])} | "
              f"{fmt(limit)} | {ratio(vals['ours'], limit)} | {peak} |")
        if mode[0] == "gradcheck":
            fast = {s: med(label, s, "fast_ms") for s in names}
            print("| gradcheck (ms, fast mode) | " + " | ".join(fmt(fast[s]) for s in names) + " | | | | | |")
    accs = {label: {s: med(label, s, "test_acc") for s in names} for label, mode, t in jobs
            if mode[0] in ("mlp", "cnn")}
    print("\ntest accuracy after the runs (sanity check that every side trains the same model):")
    for label, a in accs.items():
        print(f"  {label}: " + ", ".join(f"{s} {fmt(v, 3)}" for s, v in a.items() if v is not None))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"results": results, "limits": {f"{k[0]}/{k[1]}": v for k, v in limits.items()}}, f, indent=1)
    print(f"\nraw results in {args.json}")


if __name__ == "__main__":
    main()
