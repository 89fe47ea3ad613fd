"""diffusers counterpart for the GPU visit: same request as `ssd1b generate`, fp16 on CUDA, CPU generator.

    python3 Scripts/gpu/diffusers_side.py latents --model DIR --size 256 --steps 3 --seed 42 --out theirs.safetensors
    python3 Scripts/gpu/diffusers_side.py compare ours.safetensors theirs.safetensors
    python3 Scripts/gpu/diffusers_side.py time --model DIR --size 1024 --batch 1,4 --steps 8 [--compile]
    python3 Scripts/gpu/diffusers_side.py profile --model DIR --size 1024 --batch 2,32
"""
import argparse
import json
import sys
import time

import numpy as np
import torch


def load(model):
    from diffusers import StableDiffusionXLPipeline
    pipe = StableDiffusionXLPipeline.from_pretrained(model, torch_dtype=torch.float16, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda")


def latents(args):
    from safetensors.torch import save_file
    pipe = load(args.model)
    # The initial noise is drawn in fp32 and rounded to fp16, as ssd1b does: torch's fp16 CPU randn
    # differs between torch versions (the device machine's torch is not the fixture machine's).
    shape = (1, 4, args.size // 8, args.size // 8)
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(args.seed), dtype=torch.float32)
    noise = noise.half().to("cuda") if args.noise == "fp32" else None
    out = pipe(prompt=args.prompt, latents=noise, negative_prompt=args.negative, width=args.size, height=args.size,
               num_inference_steps=args.steps, guidance_scale=args.guidance,
               generator=torch.Generator("cpu").manual_seed(args.seed), output_type="latent").images
    save_file({"latents": out.float().cpu().contiguous()}, args.out)
    print("diffusers latents", tuple(out.shape), "std", out.float().std().item())


def compare(args):
    from safetensors.numpy import load_file
    a = load_file(args.ours)["latents"].astype(np.float64)
    b = load_file(args.theirs)["latents"].astype(np.float64)
    rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    print(json.dumps({"ours": args.ours, "theirs": args.theirs, "relative_error": rel, "shape": list(a.shape)}))


def timing(args):
    pipe = load(args.model)
    results = []
    eager_unet = pipe.unet
    if args.compile:
        # As the issue measured it: torch.compile's default mode on a channels_last UNet.
        eager_unet.to(memory_format=torch.channels_last)
    for b in [int(x) for x in args.batch.split(",")]:
        stamps = []
        if args.compile:
            # A fresh compilation per batch (static shapes, as each batch size alone would be compiled).
            torch._dynamo.reset()
            pipe.unet = torch.compile(eager_unet)
            start = time.perf_counter()

        def cb(p, i, t, kw):
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            return kw
        torch.cuda.reset_peak_memory_stats()
        pipe(prompt=["a photo of a cat"] * b, negative_prompt=["blurry"] * b, width=args.size, height=args.size,
             num_inference_steps=args.steps, guidance_scale=9.0, generator=torch.Generator("cpu").manual_seed(0),
             output_type="latent", callback_on_step_end=cb)
        per = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
        results.append({"batch": b, "seconds_per_iteration": per, "it_per_s": 1 / per,
                        "peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20})
        if args.compile:
            results[-1].update(compiled=True, first_step_seconds=stamps[0] - start)
        print(json.dumps(results[-1]), flush=True)
    print("idle allocated MiB", torch.cuda.memory_allocated() / 2**20)


def category(kernel):
    """The group of a CUDA kernel name, as `ssd-cuda-check profile` groups ours."""
    k = kernel.lower()
    if any(w in k for w in ("flash", "fmha", "attention", "sdpa")):
        return "attention"
    if any(w in k for w in ("conv", "fprop", "implicit", "winograd", "im2col")):
        return "convolution"
    if any(w in k for w in ("gemm", "nvjet", "cutlass", "xmma", "matmul", "linear", "addmm")):
        return "gemm"
    if any(w in k for w in ("norm", "softmax", "welford", "moments", "fusedparams")):
        return "normalization"
    if "memcpy" in k or "memset" in k:
        return "memcpy"
    return "elementwise"


def unet_profile(args):
    """UNet calls alone at each (UNet) batch: eager ms per call, then one call under torch.profiler with
    the CUDA kernel time grouped as ours (GEMM, convolution, attention, normalization, elementwise)."""
    from torch.profiler import ProfilerActivity, profile
    pipe = load(args.model) if args.device == "cuda" else None
    if pipe is None:  # a dry run of this code on the CPU (fp32)
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet")
    else:
        unet = pipe.unet
    dtype = next(unet.parameters()).dtype
    cfg = unet.config
    h = args.size // 8
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    for b in [int(x) for x in args.batch.split(",")]:
        g = torch.Generator("cpu").manual_seed(5)
        kw = dict(sample=torch.randn(b, cfg.in_channels, h, h, generator=g).to(args.device, dtype),
                  timestep=torch.tensor(999.0, device=args.device),
                  encoder_hidden_states=(0.5 * torch.randn(b, 77, cfg.cross_attention_dim, generator=g)).to(args.device, dtype),
                  added_cond_kwargs={"text_embeds": (0.5 * torch.randn(b, cfg.projection_class_embeddings_input_dim
                                                                       - 6 * cfg.addition_time_embed_dim, generator=g)).to(args.device, dtype),
                                     "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]] * b,
                                                              device=args.device, dtype=dtype)})
        with torch.inference_mode():
            for _ in range(2):
                unet(**kw)
            sync()
            t0 = time.perf_counter()
            for _ in range(args.calls):
                unet(**kw)
            sync()
            eager = (time.perf_counter() - t0) / args.calls
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
            with profile(activities=activities) as prof:
                unet(**kw)
                sync()
        groups, kernels = {}, {}
        for e in prof.events():
            if args.device == "cuda":
                if e.device_type.name != "CUDA":
                    continue
            elif e.cpu_parent is not None:
                continue
            us = e.time_range.elapsed_us()
            c = category(e.name)
            groups[c] = groups.get(c, 0.0) + us
            key = (e.name[:110], c)
            n, t = kernels.get(key, (0, 0.0))
            kernels[key] = (n + 1, t + us)
        total = sum(groups.values())
        label = f"diffusers UNet {args.size}x{args.size} batch {b}"
        print(f"PROFILE {label}: eager {eager * 1e3:.2f} ms per call; kernels {total / 1e3:.2f} ms", flush=True)
        for c, us in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"PROFILE {label}: {c:13s} {us / 1e3:8.2f} ms {100 * us / max(total, 1e-9):5.1f} %")
        for (name, c), (n, us) in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:args.top]:
            print(f"PROFILE {label}: {us / 1e3:8.3f} ms {100 * us / max(total, 1e-9):5.1f} %  {n}x  [{c}] {name}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("latents")
    for p in (l,):
        p.add_argument("--model", required=True)
        p.add_argument("--size", type=int, default=256)
        p.add_argument("--steps", type=int, default=3)
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--guidance", type=float, default=9.0)
        p.add_argument("--prompt", default="a photo of an astronaut riding a horse")
        p.add_argument("--negative", default="ugly, blurry, poor quality")
        p.add_argument("--out", required=True)
        p.add_argument("--noise", choices=["fp32", "pipeline"], default="fp32",
                       help="fp32: noise drawn in fp32 then rounded (as ssd1b); pipeline: diffusers' own fp16 draw")
    c = sub.add_parser("compare")
    c.add_argument("ours")
    c.add_argument("theirs")
    t = sub.add_parser("time")
    t.add_argument("--model", required=True)
    t.add_argument("--size", type=int, default=1024)
    t.add_argument("--batch", default="1")
    t.add_argument("--steps", type=int, default=8)
    t.add_argument("--compile", action="store_true", help="torch.compile (default mode) on a channels_last UNet")
    pr = sub.add_parser("profile")
    pr.add_argument("--model", required=True)
    pr.add_argument("--size", type=int, default=1024)
    pr.add_argument("--batch", default="2,32", help="UNet batches (2 = one image with guidance)")
    pr.add_argument("--calls", type=int, default=10)
    pr.add_argument("--top", type=int, default=25)
    pr.add_argument("--device", default="cuda", help="cpu: a dry run of the script on a small model")
    args = ap.parse_args()
    {"latents": latents, "compare": compare, "time": timing, "profile": unet_profile}[args.cmd](args)


if __name__ == "__main__":
    main()
