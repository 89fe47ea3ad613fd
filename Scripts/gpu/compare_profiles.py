#!/usr/bin/env python3
"""Turns the log of a `Scripts/gpu/profile.sh` visit into the tables Benchmarks/RESULTS.md wants (standard library only):

  1. where the time of one UNet call goes, per kind of operation, ours (`ssd-cuda-check profile`, every
     operation's GPU time by CUDA events) beside diffusers' (`diffusers_side.py profile`, kernels under
     torch.profiler),
     for each UNet batch both profiled;
  2. the eager ms per UNet call with each switch of the `switches` stage, against the default.

    python3 Scripts/gpu/compare_profiles.py gpu-out/visit-1.log > /tmp/tables.md

`--pick LOG` prints the switch settings to measure the table with (used by profile.sh during the visit): the
switch run with the lowest mean ratio to the default over the UNet batches timed, when that is at most 0.99
and no batch is more than 2 % slower, and only if every parity mode those switches need passed in the same
log (`PARITY MODE name: p/n passed`); nothing when no run qualifies. `--union LOG` prints the union of the
single-switch runs that qualify (profile.sh times it as one more run before picking).

`--table LOG` prints the 1024² table of the visit's `table` stage (ours: the mean of steps 3–8 printed by
`ssd1b generate`, denoising peak; diffusers: `diffusers_side.py time`, the mean of steps 3–8, peak allocated)
in the shape of Benchmarks/RESULTS.md's table.
"""
import json
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
        default = baseline(profiles, switches)
        out.append("### Switches: eager ms per UNet call (ratio to the default run)\n")
        out.append("| switches | " + " | ".join(f"UNet batch {b}" for b in batches) + " |")
        out.append("|---|" + "---|" * len(batches))
        out.append("| (defaults) | " + " | ".join(fmt(default.get(b)) for b in batches) + " |")
        for name, values in switches.items():
            if name == "defaults":
                continue
            cells = []
            for b in batches:
                v = values.get(b)
                cells.append(f"{fmt(v)} ({ratio(v, default.get(b))})" if v is not None else "–")
            out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


# The parity modes a switch needs (ssd-cuda-check parity's modes that run its code paths).
MODES = {
    # A default switched off (autotune, fused convolutions, cuDNN attention): the path every switch off.
    "SSD_CUDA_AUTOTUNE=0": "untuned",
    "SSD_CUDA_FUSED_CONV=0": "untuned",
    "SSD_CUDA_CUDNN_ATTENTION=0": "untuned",
    "SSD_CUDA_CONV_GRAPH": "graph",
    "SSD_CUDA_CUDNN_ATTENTION=composite": "autotune+graph",
    "SSD_CUDA_CUDNN_ATTENTION": "graph",
    "SSD_CUDA_AUTOTUNE": "autotune+fused",
    "SSD_CUDA_FUSED_CONV": "fused",
    "SSD_CUDA_ATTENTION_ROWS": "rows32",
}
PARITY_MODE = re.compile(r"^PARITY MODE (\S+): (\d+)/(\d+) passed")


def parity_modes(lines):
    """{mode: passed} from the `PARITY MODE` lines (a mode whose line is missing did not run)."""
    modes = {}
    for line in lines:
        m = PARITY_MODE.match(line.strip())
        if m:
            modes[m.group(1)] = m.group(2) == m.group(3) and int(m.group(3)) > 0
    return modes


def needed_modes(env):
    needed = {"default"}
    for setting in env.split():
        name = setting.split("=")[0]
        needed.add(MODES.get(setting) or MODES.get(name, "default"))
    return needed


def qualifying(lines):
    """[(mean ratio, env)] of the switch runs that are faster than the default and whose parity passed."""
    profiles, switches = parse(lines)
    modes = parity_modes(lines)
    default = baseline(profiles, switches)
    runs = []
    for env, values in switches.items():
        if env == "defaults" or not values or not all(modes.get(m) for m in needed_modes(env)):
            continue
        # Every batch the defaults were timed at, none missing (a run that failed at one batch loses).
        batches = [b for b in default if default[b]]
        if not batches or any(values.get(b) is None for b in batches):
            continue
        ratios = [values[b] / default[b] for b in batches]
        mean = sum(ratios) / len(ratios)
        if mean <= 0.99 and max(ratios) <= 1.02:
            runs.append((mean, env))
    return sorted(runs)


def baseline(profiles, switches):
    """Eager ms per UNet batch of the default settings: the `defaults` switch run (measured like the
    others), else the profile stage's."""
    default = {b: e.get("eager") for (side, _, b), e in profiles.items() if side == "ours"}
    default.update(switches.get("defaults", {}))
    return default


def pick(lines):
    runs = qualifying(lines)
    return runs[0][1] if runs else ""


def union(lines):
    settings = []
    for _, env in qualifying(lines):
        if len(env.split()) == 1:
            name = env.split("=")[0]
            if all(s.split("=")[0] != name for s in settings):
                settings.append(env)
    return " ".join(settings) if len(settings) > 1 else ""


TABLE_STAGE = re.compile(r"^\[\d+ s\] == 1024², (\d+) image\(s\)")
RETRY = re.compile(r"^\[\d+ s\] -- (\d+) image\(s\) failed")
OURS_MEAN = re.compile(r"^steps 3–(\d+): mean ([\d.]+) ms/step")
OURS_PEAK = re.compile(r"^memory peak: denoising (\d+) MiB, whole generation (\d+) MiB")
COMPILE = {1: "46.07", 16: "3.32"}


def table(lines):
    # retried: the image counts whose shown time came from the try without CUDA graphs.
    ours, theirs, batch, retrying, retried = {}, {}, None, False, set()
    for raw in lines:
        line = raw.strip()
        m = TABLE_STAGE.match(line)
        if m:
            batch, retrying = int(m.group(1)), False
            continue
        m = RETRY.match(line)
        if m:
            retrying = True
            continue
        if line.startswith("[") and " s] == " in line:
            batch = None
        m = OURS_MEAN.match(line)
        if m and batch:
            ours.setdefault(batch, {})["ms"] = float(m.group(2))
            (retried.add if retrying else retried.discard)(batch)
        m = OURS_PEAK.match(line)
        if m and batch:
            ours.setdefault(batch, {})["peak"] = int(m.group(1))
        if line.startswith("{") and '"seconds_per_iteration"' in line:
            try:
                r = json.loads(line)
                theirs[int(r["batch"])] = r
            except (ValueError, KeyError):
                pass
    out = ["| batch | ours s/it | ours it/s | diffusers eager it/s | ratio | SSD-1B torch.compile it/s (issue) "
           "| ours peak MiB (denoising) | diffusers peak allocated MiB |", "|---|---|---|---|---|---|---|---|"]
    for b in sorted(set(ours) | set(theirs)):
        o, t = ours.get(b, {}), theirs.get(b, {})
        rate = 1000 / o["ms"] if o.get("ms") else None
        theirs_rate = t.get("it_per_s")
        label = f"{b} (without CUDA graphs)" if b in retried else f"{b}"
        out.append(f"| {label} | {o['ms'] / 1000:.4f} | {rate:.2f} | " if rate else f"| {label} | – | – | ")
        out[-1] += (f"{theirs_rate:.2f} | " if theirs_rate else "– | ") + (ratio(rate, theirs_rate) if rate and theirs_rate else "–")
        out[-1] += f" | {COMPILE.get(b, '')} | {o.get('peak', '–')} | " + (f"{t['peak_allocated_mib']:.0f} |" if "peak_allocated_mib" in t else "– |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    arguments = sys.argv[1:]
    mode = arguments.pop(0) if arguments and arguments[0].startswith("--") else None
    if len(arguments) != 1 or mode not in (None, "--pick", "--union", "--table"):
        sys.exit(__doc__)
    with open(arguments[0], encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip("\n") for line in f]
    if mode == "--pick":
        print(pick(lines))
    elif mode == "--union":
        print(union(lines))
    elif mode == "--table":
        print(table(lines), end="")
    else:
        print(tables(*parse(lines)), end="")
