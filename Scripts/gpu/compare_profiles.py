#!/usr/bin/env python3
"""Turns a `Scripts/gpu/profile.sh 1` log into the tables Benchmarks/RESULTS.md wants (standard library only):

  1. where the time of one UNet call goes, per kind of operation, ours (`ssd-cuda-check profile`, every
     operation's GPU time by CUDA events) beside diffusers' (`diffusers_side.py profile`, kernels under
     torch.profiler),
     for each UNet batch both profiled;
  2. the eager ms per UNet call with each switch of the `switches` stage, against the default.

    python3 Scripts/gpu/compare_profiles.py gpu-out/profile-1.log > /tmp/tables.md
"""
import re
import sys
from collections import OrderedDict

OURS = re.compile(r"^PROFILE UNet (\d+)x\d+ batch (\d+): (.*)$")
THEIRS = re.compile(r"^PROFILE diffusers UNet (\d+)x\d+ batch (\d+): (.*)$")
EAGER = re.compile(r"^eager ([\d.]+) ms per call")
GROUP = re.compile(r"^(gemm|convolution|attention|normalization|elementwise|memcpy)\s+([\d.]+) ms\s+([\d.]+) %"
                   r"(?:\s+(\d+) calls)?(?:\s+([\d.]+) TFLOP\s+([\d.]+) TFLOP/s)?")
STAGE = re.compile(r"^\[\d+ s\] == (.*)$")
CATEGORIES = ["gemm", "convolution", "attention", "normalization", "elementwise", "memcpy"]


def parse(lines):
    """(profiles, switches): profiles[(side, size, batch)] = {"eager": ms, groups...}; switches[stage][batch] = ms."""
    profiles, switches = OrderedDict(), OrderedDict()
    stage = None
    for raw in lines:
        line = raw.rstrip("\n")
        m = STAGE.match(line)
        if m:
            stage = m.group(1)
            continue
        for side, pattern in (("ours", OURS), ("diffusers", THEIRS)):
            m = pattern.match(line)
            if not m:
                continue
            size, batch, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            eager = EAGER.match(rest)
            if stage and stage.startswith("eager UNet with "):
                if side == "ours" and eager:
                    switches.setdefault(stage[len("eager UNet with "):], OrderedDict())[batch] = float(eager.group(1))
                continue
            entry = profiles.setdefault((side, size, batch), {})
            if eager:
                entry["eager"] = float(eager.group(1))
            g = GROUP.match(rest)
            if g:
                entry[g.group(1)] = float(g.group(2))
                if g.group(5):
                    entry[g.group(1) + " TFLOP"] = float(g.group(5))
    return profiles, switches


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"


def fmt(x):
    return f"{x:.2f}" if x is not None else "–"


def tables(profiles, switches):
    out = []
    keys = sorted({(size, batch) for (_, size, batch) in profiles})
    for size, batch in keys:
        ours, theirs = profiles.get(("ours", size, batch), {}), profiles.get(("diffusers", size, batch), {})
        out.append(f"### UNet call at {size}², UNet batch {batch}: where the time goes\n")
        out.append("| kind | ours ms (GPU, events) | TFLOP/s | diffusers ms (kernels) | ours / diffusers |")
        out.append("|---|---|---|---|---|")
        for c in CATEGORIES:
            a, b = ours.get(c), theirs.get(c)
            if a is None and b is None:
                continue
            flops = ours.get(c + " TFLOP")
            rate = f"{flops / (a * 1e-3):.0f}" if flops and a else "–"
            out.append(f"| {c} | {fmt(a)} | {rate} | {fmt(b)} | {ratio(a, b)} |")
        sa = sum(ours.get(c, 0.0) for c in CATEGORIES)
        sb = sum(theirs.get(c, 0.0) for c in CATEGORIES)
        out.append(f"| sum | {fmt(sa)} | | {fmt(sb)} | {ratio(sa, sb)} |")
        out.append(f"| eager call (wall) | {fmt(ours.get('eager'))} | | {fmt(theirs.get('eager'))} | "
                   f"{ratio(ours.get('eager'), theirs.get('eager'))} |\n")
    if switches:
        batches = sorted({b for v in switches.values() for b in v})
        default = {b: profiles.get(("ours", s, b), {}).get("eager") for (_, s, b) in profiles if _ == "ours"}
        out.append("### Switches: eager ms per UNet call (ratio to the default run)\n")
        out.append("| switches | " + " | ".join(f"UNet batch {b}" for b in batches) + " |")
        out.append("|---|" + "---|" * len(batches))
        out.append("| (default) | " + " | ".join(fmt(default.get(b)) for b in batches) + " |")
        for name, values in switches.items():
            cells = []
            for b in batches:
                v = values.get(b)
                cells.append(f"{fmt(v)} ({ratio(v, default.get(b))})" if v is not None else "–")
            out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        print(tables(*parse(f)), end="")
