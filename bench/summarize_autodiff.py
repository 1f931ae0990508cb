"""Prints the medians of a bench_autodiff JSON result and the ratios BENCHMARKS.md quotes."""
import json
import sys


def medians(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") == "median":
            out[b["run_name"]] = b
    return data["context"], out


def main(path):
    context, m = medians(path)
    ns = lambda name: m[name]["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6}[m[name]["time_unit"]]
    print(f"  machine: {context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz; "
          f"{context.get('date')}")
    print(f"  per-op overhead (4-element chain, forward+backward): {m['chain_of_small_ops']['s_per_op'] * 1e9:.0f} ns per op")
    layer = m["layer_forward_backward"]["GFLOPs"]
    comp = m["layer_composite_forward_backward"]["GFLOPs"]
    sgemm = m["sgemm_same_shapes"]["GFLOPs"]
    print(f"  relu(linear) 100x784x256 forward+backward: {layer:.1f} GFLOP/s = {layer / sgemm:.0%} "
          f"of plain sgemm ({sgemm:.1f} GFLOP/s) in the same run")
    print(f"  relu(matmul + b), same shapes:             {comp:.1f} GFLOP/s = {comp / sgemm:.0%} of sgemm")
    print(f"  gradient cost, layer: forward+backward / forward = "
          f"{ns('layer_forward_backward') / ns('layer_forward'):.2f}")
    print(f"  gradient cost, 1000-element composite: forward+backward / forward = "
          f"{ns('composite_forward_backward') / ns('composite_forward'):.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
