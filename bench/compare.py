"""Runs the comparison workloads on this library and on the references, alternating them, and
prints medians and ratios. Called by bench/compare.

The sides: ours; LibTorch 1.13 (Debian's libtorch-dev, C++); PyTorch 1.13 (Debian's
python3-torch, eager); PyTorch 2.x from PyPI in eager mode and with torch.compile (inductor) of the
whole training step; JAX (PyPI, jax.jit of the whole step). PyTorch 2.x and JAX live in a venv made
from a Python 3.12 interpreter (JAX >= 0.11 needs it): build/bench/venv312.

Each program prints "result key=value ..." lines; see bench/workloads.cpp.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "bench")
VENV = os.path.join(BUILD, "venv312")
OURS = os.path.join(BUILD, "bench", "workloads")
LIBTORCH = os.path.join(BUILD, "libtorch", "libtorch_workloads")
REFS = os.path.join(ROOT, "bench", "references")
NAMES = ["ours", "libtorch", "torch1.13", "torch", "torch.compile", "jax"]


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def sudo():
    return [] if os.geteuid() == 0 else ["sudo"]


def python312():
    """A Python 3.12 interpreter that runs: on PATH, or one of pyenv's; None if there is none.

    Each candidate is run once: a pyenv shim on PATH exists and is executable even where no 3.12
    is selected, and fails only when run."""
    for cand in [shutil.which("python3.12")] + sorted(
            glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True):
        if not cand or not os.access(cand, os.X_OK):
            continue
        try:
            ok = subprocess.run([cand, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return cand
    return None


def install_references():
    """LibTorch and PyTorch 1.13 from Debian; PyTorch 2.x and JAX from PyPI into a 3.12 venv."""
    sh(sudo() + ["apt-get", "update", "-q"])
    sh(sudo() + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                 "--no-install-recommends", "libtorch-dev", "python3-torch", "zlib1g-dev"])
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        py = python312()
        if py is None:
            print("no Python 3.12 found (on PATH or under ~/.pyenv/versions; `pyenv install 3.12` "
                  "makes one): PyTorch 2.x, torch.compile and JAX are skipped", file=sys.stderr)
            return
        sh([py, "-m", "venv", VENV])
    sh([os.path.join(VENV, "bin", "pip"), "install", "-q", "torch", "jax[cpu]", "numpy"])


def build_libtorch():
    try:
        sh(["cmake", "-S", os.path.join(REFS, "libtorch"), "-B", os.path.join(BUILD, "libtorch"),
            "-DCMAKE_BUILD_TYPE=Release"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sh(["cmake", "--build", os.path.join(BUILD, "libtorch"), "-j2"], stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        print("LibTorch reference: not built (is libtorch-dev installed?)", file=sys.stderr)


def probe(python, code):
    p = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def dpkg_version(package):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                       text=True)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def sides_and_versions():
    """The sides that can run here (name -> command prefix) and what each is."""
    sides, versions = {"ours": [OURS]}, {}
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    versions["ours"] = f"{git}, OpenBLAS {dpkg_version('libopenblas0-pthread') or '?'}"
    if os.path.exists(LIBTORCH):
        sides["libtorch"] = [LIBTORCH]
        versions["libtorch"] = f"LibTorch {dpkg_version('libtorch-dev') or '?'} (Debian)"
    debian_torch = probe("/usr/bin/python3", "import torch; print(torch.__version__)")
    if debian_torch:
        sides["torch1.13"] = ["/usr/bin/python3", os.path.join(REFS, "torch_workloads.py")]
        versions["torch1.13"] = f"PyTorch {debian_torch} (Debian), eager"
    venv_python = os.path.join(VENV, "bin", "python")
    if os.path.exists(venv_python):
        torch = probe(venv_python, "import torch; print(torch.__version__)")
        if torch:
            sides["torch"] = [venv_python, os.path.join(REFS, "torch_workloads.py")]
            sides["torch.compile"] = sides["torch"] + ["--compile"]
            versions["torch"] = f"PyTorch {torch} (PyPI), eager"
            versions["torch.compile"] = f"PyTorch {torch} (PyPI), torch.compile of the step"
        jax = probe(venv_python, "import jax; print(jax.__version__)")
        if jax:
            sides["jax"] = [venv_python, os.path.join(REFS, "jax_workloads.py")]
            versions["jax"] = f"JAX {jax} (PyPI), jax.jit of the step"
    return sides, versions


def cpus(threads, pin):
    """taskset's CPU list for `threads` threads (the first cores), or no prefix."""
    return ["taskset", "-c", ",".join(str(c) for c in range(threads))] if pin else []


def run_all(cmd, threads, pin):
    """Runs one program on `threads` threads: its result lines, as dicts (none when it failed)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), AD_NUM_THREADS=str(threads))
    p = subprocess.run(cpus(threads, pin) + cmd, capture_output=True, text=True, env=env)
    results = [dict(kv.split("=", 1) for kv in line.split()[1:])
               for line in p.stdout.splitlines() if line.startswith("result ")]
    if not results:
        print(f"  failed: {' '.join(cmd)}\n{p.stdout[-800:]}{p.stderr[-800:]}", file=sys.stderr)
    return results


def run(cmd, threads, pin):
    results = run_all(cmd, threads, pin)
    return results[0] if results else None


SEQUENCE = ("lstm", "transformer")


def limit(mode, threads, pin):
    """The arithmetic limit of a workload: plain sgemm on its products (workloads sgemm), its
    result line (epoch_s, or step_ms for the sequence models; forward_s and backward_s, each pass
    alone; distinct_s, each product on its own operands); None when it could not be measured."""
    for r in run_all([OURS, "sgemm", str(threads)], threads, pin):
        if r.get("model") != mode[0]:
            continue
        if mode[0] == "lstm" or (mode[0] == "transformer" and r.get("seq") == mode[1]) or (
                mode[0] in ("mlp", "cnn") and r.get("batch") == mode[2]):
            return r
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--with-references", action="store_true",
                    help="install the references first (Debian packages, and PyPI into a venv)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each measurement (medians)")
    ap.add_argument("--threads", default="1,2", help="thread counts to try")
    ap.add_argument("--pin", action="store_true",
                    help="run every process under taskset on exactly as many cores as threads")
    ap.add_argument("--workloads", default="mlp,mlp1000,cnn,tiny,gradcheck")
    ap.add_argument("--sides", default=",".join(NAMES), help="which sides to run (those present)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per MLP run (the best is kept)")
    ap.add_argument("--cnn-epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20,
                    help="timed steps per sequence-model run (lstm, transformer64/256/1024)")
    ap.add_argument("--json", default=os.path.join(BUILD, "compare.json"))
    args = ap.parse_args()
    if not 1 <= args.runs <= 100:
        ap.error("--runs must be from 1 to 100")
    threads = [int(t) for t in args.threads.split(",")]
    if any(t < 1 or t > os.cpu_count() for t in threads):
        ap.error(f"--threads must be from 1 to {os.cpu_count()} (this machine's cores)")

    if args.with_references:
        install_references()
    build_libtorch()
    sides, versions = sides_and_versions()
    wanted = args.sides.split(",")
    sides = {k: v for k, v in sides.items() if k in wanted}
    missing = [s for s in NAMES if s in wanted and s not in sides]
    if missing:
        print(f"references absent: {', '.join(missing)} (bench/compare --with-references installs "
              "them)")
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
            elif w == "lstm":
                jobs.append((f"lstm t{t}", ["lstm", str(args.steps), str(t)], t))
            elif w.startswith("transformer"):
                seq = w[len("transformer"):] or "64"
                jobs.append((f"transformer L{seq} t{t}", ["transformer", seq, str(args.steps),
                                                           str(t)], t))
        if w == "gradcheck":
            jobs.append(("gradcheck", ["gradcheck"], 1))

    load_before = os.getloadavg()
    results = {}  # label -> side -> list of result dicts
    # label -> [(our result, the limit measured just before that run)]: each of our training runs
    # is paired with its own limit, so that a change in others' load between the two moves both
    # (a limit measured minutes apart moved the ratio by up to 1.4x).
    pairs = {}
    for r in range(args.runs):
        for label, mode, t in jobs:
            for side, cmd in sides.items():  # alternating sides, run after run
                if mode[0] == "gradcheck" and side in ("libtorch", "torch.compile"):
                    continue  # no gradcheck there (PyTorch's is the reference)
                if mode[0] in SEQUENCE and side == "libtorch":
                    continue  # the C++ reference has the MLP, the CNN and the tiny model
                print(f"run {r + 1}/{args.runs}: {label} {side}", file=sys.stderr)
                paired = side == "ours" and mode[0] in ("mlp", "cnn") + SEQUENCE
                lim = limit(mode, t, args.pin) if paired else None
                out = run(cmd + mode, t, args.pin)
                if out:
                    results.setdefault(label, {}).setdefault(side, []).append(out)
                    if lim:
                        pairs.setdefault(label, []).append((out, lim))
    load_after = os.getloadavg()

    def med(label, side, key):
        vals = [float(x[key]) for x in results.get(label, {}).get(side, [])
                if x.get(key, "nan") != "nan"]
        return statistics.median(vals) if vals else None

    def fmt(v, digits=3):
        return "—" if v is None else f"{v:.{digits}g}"

    def ratio(a, b):
        return fmt(a / b, 2) if a and b else "—"

    def paired_median(got, which, key):  # over (ours, limit) pairs; which: 0 ours, 1 the limit
        return fmt(statistics.median(float(x[which].get(key, "nan")) for x in got))

    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, medians of {args.runs} runs, "
          f"{'pinned (taskset on exactly the thread count)' if args.pin else 'not pinned'}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; limit: plain "
          "sgemm on the same products, measured just before each of our runs; ours / limit: the "
          "median of those runs' own ratios")
    for s in NAMES:
        if s in versions and s in sides:
            print(f"- {s}: {versions[s]}")
    names = [s for s in NAMES if s in sides]
    print()
    print("| workload | " + " | ".join(names) + " | limit | ours / limit | "
          "ours / best of compile, JAX | ours / LibTorch |")
    print("|---" * (len(names) + 5) + "|")
    for label, mode, t in jobs:
        key = {"tiny": "us_per_step", "gradcheck": "full_ms", "lstm": "step_ms",
               "transformer": "step_ms"}.get(mode[0], "epoch_s")
        vals = {s: med(label, s, key) for s in names}
        got = pairs.get(label, [])
        lim = statistics.median(float(x[1][key]) for x in got) if got else None
        to_limit = statistics.median(float(x[0][key]) / float(x[1][key])
                                     for x in got) if got else None
        unit = {"epoch_s": "s/epoch", "us_per_step": "µs/step", "full_ms": "ms (full)",
                "step_ms": "ms/step"}[key]
        best_ref = min([v for s, v in vals.items() if s in ("torch.compile", "jax") and v],
                       default=None)
        print(f"| {label} ({unit}) | " + " | ".join(fmt(vals[s]) for s in names) +
              f" | {fmt(lim)} | {'—' if to_limit is None else f'{to_limit:.2f}'}"
              f" | {ratio(vals['ours'], best_ref)}"
              f" | {ratio(vals['ours'], vals.get('libtorch'))} |")
        if mode[0] == "gradcheck":
            fast = {s: med(label, s, "fast_ms") for s in names}
            print("| gradcheck (ms, fast mode) | " + " | ".join(fmt(fast[s]) for s in names) +
                  " | | | | |")
    sequence_jobs = [(label, mode, t) for label, mode, t in jobs if mode[0] in SEQUENCE]
    if sequence_jobs:
        print("\nsequence models, peak memory (MiB; arrays: the library's arrays during a step, "
              "the others' whole process):\n")
        print("| workload | ours (arrays) | " + " | ".join(names) + " | ours / torch |")
        print("|---" * (len(names) + 3) + "|")
        for label, mode, t in sequence_jobs:
            peaks = {s: med(label, s, "peak_mib") for s in names}
            print(f"| {label} | {fmt(med(label, 'ours', 'arrays_peak_mib'), 4)} | " +
                  " | ".join(fmt(peaks[s], 4) for s in names) +
                  f" | {ratio(peaks['ours'], peaks.get('torch'))} |")
    if any(mode[0] in ("mlp", "cnn") for label, mode, t in jobs if label in pairs):
        print("\nwhere our epoch goes (s; medians of the runs above; a pass's limit: its products "
              "alone on plain sgemm; own operands: the step's products each on its own operands, "
              "as in training, where the limit's share three buffers):\n")
        print("| workload | epoch | limit | own operands | loader | forward | its limit | "
              "backward | its limit | optimizer |")
        print("|---" * 10 + "|")
        for label, mode, t in jobs:
            got = pairs.get(label)
            if not got or mode[0] in SEQUENCE:
                continue
            cells = [(0, "epoch_s"), (1, "epoch_s"), (1, "distinct_s"), (0, "loader_s"),
                     (0, "forward_s"), (1, "forward_s"), (0, "backward_s"), (1, "backward_s"),
                     (0, "optimizer_s")]
            print(f"| {label} | " + " | ".join(paired_median(got, w, k) for w, k in cells) + " |")
    train_jobs = [(label, mode, t) for label, mode, t in jobs if mode[0] in ("mlp", "cnn")]
    if train_jobs:
        print("\npeak resident memory (MiB, whole process; ours / LibTorch):\n")
        print("| workload | " + " | ".join(names) + " | ours / LibTorch |")
        print("|---" * (len(names) + 2) + "|")
        for label, mode, t in train_jobs:
            peaks = {s: med(label, s, "peak_mib") for s in names}
            print(f"| {label} | " + " | ".join(fmt(peaks[s], 4) for s in names) +
                  f" | {ratio(peaks['ours'], peaks.get('libtorch'))} |")
        print("\ntest accuracy after the runs (a check that every side trains the same model):")
        for label, mode, t in train_jobs:
            accs = {s: med(label, s, "test_acc") for s in names}
            print(f"  {label}: " + ", ".join(f"{s} {fmt(v, 3)}" for s, v in accs.items()
                                            if v is not None))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"results": results, "versions": versions, "pinned": args.pin,
                   "load": [load_before, load_after],
                   "ours_and_limit": pairs}, f, indent=1)
    print(f"\nraw results in {args.json}")


if __name__ == "__main__":
    main()
