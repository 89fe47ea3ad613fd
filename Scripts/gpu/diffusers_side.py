"""diffusers counterpart for the GPU visit: same request as `ssd1b generate`, fp16 on CUDA, CPU generator.

    python3 Scripts/gpu/diffusers_side.py latents --model DIR --size 256 --steps 3 --seed 42 --out theirs.safetensors
    python3 Scripts/gpu/diffusers_side.py compare ours.safetensors theirs.safetensors
    python3 Scripts/gpu/diffusers_side.py time --model DIR --size 1024 --batch 1,4 --steps 8
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
    for b in [int(x) for x in args.batch.split(",")]:
        stamps = []

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
        print(json.dumps(results[-1]), flush=True)
    print("idle allocated MiB", torch.cuda.memory_allocated() / 2**20)


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
    args = ap.parse_args()
    {"latents": latents, "compare": compare, "time": timing}[args.cmd](args)


if __name__ == "__main__":
    main()
