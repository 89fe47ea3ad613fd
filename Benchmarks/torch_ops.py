"""PyTorch counterpart of `ssd-bench gemm|conv|attention` (same cases, same timing rule).

Usage (normally run by `ssd-bench ... --torch`):
    python Benchmarks/torch_ops.py --op gemm --threads 2 --cases '[[1024,1024,1024]]'
Prints a line with the torch version and build, then a JSON list of best-of-N seconds per case
(fp32, the layouts PyTorch is fastest with: F.linear, channels_last conv2d, SDPA).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def best_time(fn, min_runs=3, budget=1.0):
    fn()  # warm-up
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_runs or (spent < budget and runs < 50):
        t = time.perf_counter()
        fn()
        d = time.perf_counter() - t
        best, spent, runs = min(best, d), spent + d, runs + 1
    return best


def case_fn(op, p):
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.rand(*s, generator=g) * 2 - 1
    if op == "gemm":
        m, n, k = p
        x, w = rnd(m, k), rnd(n, k)
        return lambda: F.linear(x, w)
    if op == "conv":
        b, h, w_, cin, cout, ks, s = p
        x = rnd(b, cin, h, w_).contiguous(memory_format=torch.channels_last)
        w = rnd(cout, cin, ks, ks).contiguous(memory_format=torch.channels_last)
        bias = rnd(cout)
        return lambda: F.conv2d(x, w, bias, stride=s, padding=ks // 2)
    b, nq, nk, heads, d, causal = p
    q, k, v = rnd(b, heads, nq, d), rnd(b, heads, nk, d), rnd(b, heads, nk, d)
    return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", required=True, choices=["gemm", "conv", "attention"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}, {a.threads} threads,"
          f" mkldnn={torch.backends.mkldnn.is_available()})")
    with torch.inference_mode():
        times = [best_time(case_fn(a.op, p)) for p in json.loads(a.cases)]
    print(json.dumps(times))


if __name__ == "__main__":
    main()
