"""Prints the medians of a bench_autodiff or bench_nn JSON result and the ratios BENCHMARKS.md
quotes. Usage: python3 bench/summarize.py autodiff|nn RESULT.json"""
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


def ns(m, name):
    return m[name]["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6}[m[name]["time_unit"]]


def autodiff(m):
    print(f"  per-op overhead (4-element chain, forward+backward): "
          f"{m['chain_of_small_ops']['s_per_op'] * 1e9:.0f} ns per op")
    print(f"  the same chain's forward traced (ad::trace recording): "
          f"{m['chain_of_small_ops_traced']['s_per_op'] * 1e9:.0f} ns per op")
    layer = m["layer_forward_backward"]["GFLOPs"]
    comp = m["layer_composite_forward_backward"]["GFLOPs"]
    sgemm = m["sgemm_same_shapes"]["GFLOPs"]
    print(f"  relu(linear) 100x784x256 forward+backward: {layer:.1f} GFLOP/s = {layer / sgemm:.0%} "
          f"of plain sgemm ({sgemm:.1f} GFLOP/s) in the same run")
    print(f"  relu(matmul + b), same shapes:             {comp:.1f} GFLOP/s = {comp / sgemm:.0%} of sgemm")
    print(f"  gradient cost, layer: forward+backward / forward = "
          f"{ns(m, 'layer_forward_backward') / ns(m, 'layer_forward'):.2f}")
    print(f"  gradient cost, 1000-element composite: forward+backward / forward = "
          f"{ns(m, 'composite_forward_backward') / ns(m, 'composite_forward'):.2f}")


def nn(m):
    f, fb, step, opt = (ns(m, k) / 1e3 for k in
                        ("mlp_forward", "mlp_forward_backward", "mlp_step", "mlp_optimizer_only"))
    print(f"  MLP 784-256-128-10, batch 100, one step: {step:.0f} µs = forward {f:.0f} + backward "
          f"{fb - f:.0f} + optimizer {opt:.0f} (µs); forward+backward / forward = {fb / f:.2f}")
    print(f"  CNN (the fashion_mnist example's), batch 100: forward {ns(m, 'cnn_forward') / 1e6:.1f} ms, "
          f"step {ns(m, 'cnn_step') / 1e6:.1f} ms")
    print(f"  tiny MLP 2-16-16-1 step: {ns(m, 'tiny_mlp_step') / 1e3:.2f} µs")


if __name__ == "__main__":
    context, m = medians(sys.argv[2])
    print(f"  ({context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz, {context.get('date')})")
    {"autodiff": autodiff, "nn": nn}[sys.argv[1]](m)
