#!/usr/bin/env python3
"""Data-parallel measurements on this machine, and the scaling model they feed (BENCHMARKS.md).

Runs bench/distributed (built by bench/distributed_run) under mpirun:
  1. all-reduce time and bus bandwidth, 2 processes, over shared memory, TCP on the loopback and,
     where network namespaces can be made, TCP between two "hosts" (scripts/netns-hosts);
  2. the step time of the MLP and the CNN at 1 and 2 processes (global batch 100, the example's),
     and how much of the all-reduce the overlap hides: on the two hosts with the link limited to
     1 Gb/s, where the all-reduce takes as long as a good part of the step;
  3. the compute time of one step at several batches on one process (this machine as one node);
then prints the model: a ring all-reduce of B bytes over N nodes takes
  2(N-1)/N * B / bandwidth + buckets * 2(N-1) * latency,
against the compute per step, for 8, 16 and 64 nodes on 10, 25 and 100 Gb/s.
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bench", "bench", "distributed")
NETNS = os.path.join(ROOT, "scripts", "netns-hosts")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
TCP = ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"]
PARAMS = {"mlp": 235146, "cnn": 421642}


def result(cmd, threads=1):
    env = dict(os.environ, AD_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    line = next((l for l in out.stdout.splitlines() if l.startswith("result ")), None)
    if out.returncode != 0 or line is None:
        sys.exit("failed: %s\n%s%s" % (" ".join(cmd), out.stdout, out.stderr))
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    return {k: (v if re.match(r"^[a-z]", v) else float(v)) for k, v in fields.items()}


def median_of(runs, cmd, key, threads=1):
    """The run (of `runs`) with the median `key`."""
    rs = sorted((result(cmd, threads) for _ in range(runs)), key=lambda r: r[key])
    return rs[len(rs) // 2]


class Hosts:
    """Two network namespaces as two hosts (None where they cannot be made)."""

    def __init__(self, name, rate=None):
        self.name = name
        up = subprocess.run([NETNS, "up", name] + ([rate] if rate else []),
                            capture_output=True, text=True)
        self.ok = up.returncode == 0
        self.why = up.stderr.strip()

    def mpirun(self):
        return [NETNS, "mpirun", self.name]

    def close(self):
        subprocess.run([NETNS, "down", self.name])


def allreduce_table(runs, hosts):
    sizes = [(1, 400, "1 float (latency)"), (PARAMS["mlp"], 200, "MLP, 235,146 floats"),
             (PARAMS["cnn"], 200, "CNN, 421,642 floats"), (25_000_000, 8, "25M floats (100 MB)")]
    paths = [("shared memory", MPIRUN), ("TCP, loopback", MPIRUN + TCP)]
    if hosts.ok:
        paths.append(("TCP, two hosts (veth)", hosts.mpirun()))
    rows, measured = [], {}
    for label, mpirun in paths:
        for floats, reps, what in sizes:
            r = median_of(runs, mpirun + ["-np", "2", BENCH, "allreduce", str(floats), str(reps)],
                          "seconds")
            measured[(label, floats)] = r
            rows.append((label, what, r["seconds"] * 1e6, r["bus_gbytes_per_s"]))
    print("\n### All-reduce, 2 processes (median of %d runs, each the median of its repetitions)\n"
          % runs)
    print("| path | buffer | time | bus bandwidth |")
    print("|---|---|---:|---:|")
    for label, what, us, bw in rows:
        bw_text = "" if what.startswith("1 float") else "%.2f GB/s (%.1f Gb/s)" % (bw, bw * 8)
        print("| %s | %s | %s | %s |" % (label, what, "%.1f µs" % us if us < 1e4 else
                                           "%.1f ms" % (us / 1e3), bw_text))
    return measured, paths[-1][0]


def step_table(runs, slow):
    print("\n### Step time, global batch 100 (median of %d runs)\n" % runs)
    print("| model | processes × threads | step | step, buckets at the end | compute alone | "
          "all-reduce wait, overlapped / at the end | hidden | window |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    out = {}
    configs = [(MPIRUN, 1, 1, "1 × 1"), (MPIRUN, 1, 2, "1 × 2"), (MPIRUN, 2, 1, "2 × 1, shared memory")]
    if slow.ok:
        configs.append((slow.mpirun(), 2, 1, "2 × 1, two hosts at 1 Gb/s"))
    for model in ("mlp", "cnn"):
        for mpirun, np_, threads, label in configs:
            steps = "40" if model == "mlp" else "10"
            r = median_of(runs, mpirun + ["-np", str(np_), BENCH, "step", model, "100", steps],
                          "step_s", threads)
            out[(model, label)] = r
            hidden = "" if np_ == 1 else "%.0f%%" % (100 * r["hidden_fraction"])
            wait = "" if np_ == 1 else "%.2f / %.2f ms" % (r["wait_overlap_s"] * 1e3,
                                                           r["wait_serial_s"] * 1e3)
            window = "" if np_ == 1 else "%.2f ms" % (r["window_s"] * 1e3)
            serial = "" if np_ == 1 else "%.2f ms" % (r["step_without_overlap_s"] * 1e3)
            print("| %s | %s | %.2f ms | %s | %.2f ms | %s | %s | %s |" % (
                model.upper(), label, r["step_s"] * 1e3, serial, r["compute_s"] * 1e3, wait,
                hidden, window))
    return out


def compute_sweep(runs, threads):
    batches = [8, 16, 32, 64, 128, 256]
    sweep = {}
    for model in ("mlp", "cnn"):
        for b in batches:
            r = median_of(runs, MPIRUN + ["-np", "1", BENCH, "step", model, str(b), "10"],
                          "compute_s", threads)
            sweep[(model, b)] = r["compute_s"]
    return batches, sweep


def fit(batches, times):
    """Least squares t = a + c*b."""
    n = len(batches)
    mb, mt = sum(batches) / n, sum(times) / n
    c = sum((b - mb) * (t - mt) for b, t in zip(batches, times)) / sum((b - mb) ** 2 for b in batches)
    return mt - c * mb, c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (the median is kept)")
    args = ap.parse_args()
    if not 1 <= args.runs <= 50:
        ap.error("--runs must be from 1 to 50")

    fast, slow = Hosts("adbench%d" % os.getpid()), Hosts("adslow%d" % os.getpid(), "1gbit")
    try:
        if not fast.ok:
            print("(two hosts skipped: %s)" % fast.why)
        measured, network = allreduce_table(args.runs, fast)
        steps = step_table(args.runs, slow)
    finally:
        fast.close()
        slow.close()
    batches, sweep = compute_sweep(args.runs, 2)

    # The model's inputs.
    latency = measured[(network, 1)]["seconds"] / 2  # a ring of 2: 2(N-1) = 2 hops
    shm = "2 × 1, shared memory"
    print("\n### The scaling model's inputs and predictions\n")
    print("Inputs measured above: the hop latency α = %.1f µs (%s: 1 float, 2 hops); the "
          "bandwidth at which this host reduces in memory (shared memory, the model's buffer), "
          "which caps a link's; the compute per step on one node (this machine, 2 threads) at "
          "batches %s, fitted t = a + c·b; and the overlap window, the backward time after the "
          "first bucket starts, as a fraction of the compute (2 processes, shared memory):\n"
          % (latency * 1e6, network, batches))
    fits, window, cap, last = {}, {}, {}, {}
    for model in ("mlp", "cnn"):
        times = [sweep[(model, b)] for b in batches]
        a, c = fit(batches, times)
        fits[model] = (a, c)
        r = steps[(model, shm)]
        window[model] = r["window_s"] / r["compute_s"]
        cap[model] = measured[("shared memory", PARAMS[model])]["bus_gbytes_per_s"] * 1e9
        last[model] = r["last_bucket"] / PARAMS[model]
        print("- %s: compute %s → a = %.2f ms, c = %.3f ms per sample; reduces at %.1f GB/s; "
              "%d buckets, the last ready holding %.0f%% of the gradient; window %.0f%% of the "
              "compute" % (
                  model.upper(), ", ".join("%d: %.2f ms" % (b, t * 1e3) for b, t in
                                           zip(batches, times)),
                  a * 1e3, c * 1e3, cap[model] / 1e9, r["buckets"], 100 * last[model],
                  100 * window[model]))

    def allreduce_time(model, nodes, gbit, alpha, share=1.0):
        bw = min(gbit * 1e9 / 8, cap[model])
        buckets = steps[(model, shm)]["buckets"]
        return (2 * (nodes - 1) / nodes * share * PARAMS[model] * 4 / bw
                + buckets * 2 * (nodes - 1) * alpha)

    def efficiency(model, nodes, gbit, batch, overlap, alpha=latency):
        a, c = fits[model]
        t_c = a + c * batch
        t_ar = allreduce_time(model, nodes, gbit, alpha)
        exposed = t_ar
        if overlap:  # what the window cannot hide, and at least the last bucket's own time
            exposed = max(t_ar - window[model] * t_c,
                          allreduce_time(model, nodes, gbit, alpha, last[model]))
        return t_c / (t_c + exposed), t_ar

    def batch_at_90(model, nodes, gbit, overlap, alpha=latency):
        lo, hi = 0, 1 << 20
        while hi - lo > 1:  # efficiency grows with the batch
            mid = (lo + hi) // 2
            if efficiency(model, nodes, gbit, mid, overlap, alpha)[0] >= 0.9:
                hi = mid
            else:
                lo = mid
        return hi

    for model in ("cnn", "mlp"):
        print("\n%s, %d parameters (%.2f MB of gradients), batch 100 per node: the all-reduce "
              "time, the predicted efficiency without / with overlap, and the smallest batch per "
              "node that keeps 90%% (without / with overlap)\n" % (
                  model.upper(), PARAMS[model], PARAMS[model] * 4 / 1e6))
        print("| nodes | link | all-reduce | efficiency | batch per node for 90% |")
        print("|---:|---|---:|---:|---:|")
        for nodes in (8, 16, 64):
            for gbit in (10, 25, 100):
                e0, t_ar = efficiency(model, nodes, gbit, 100, False)
                e1, _ = efficiency(model, nodes, gbit, 100, True)
                print("| %d | %d Gb/s | %.2f ms | %.1f%% / %.1f%% | %d / %d |" % (
                    nodes, gbit, t_ar * 1e3, 100 * e0, 100 * e1,
                    batch_at_90(model, nodes, gbit, False), batch_at_90(model, nodes, gbit, True)))
    # A switched network's hop costs more than this machine's veth: the goal's row again with
    # α = 50 µs.
    e0, t_ar = efficiency("cnn", 16, 25, 100, False, 50e-6)
    e1, _ = efficiency("cnn", 16, 25, 100, True, 50e-6)
    print("\nWith α = 50 µs (TCP through a switch), CNN, 16 nodes, 25 Gb/s: all-reduce %.2f ms, "
          "efficiency %.1f%% / %.1f%%, batch per node for 90%%: %d / %d" % (
              t_ar * 1e3, 100 * e0, 100 * e1, batch_at_90("cnn", 16, 25, False, 50e-6),
              batch_at_90("cnn", 16, 25, True, 50e-6)))


if __name__ == "__main__":
    main()
