"""diffusers counterpart of `ssd-bench unet` (DESIGN.md §8): one denoising iteration = UNet on
the guidance-doubled batch + Euler step, at batch sizes B, on the same random-weight model folder.

    /work/venv/bin/python Benchmarks/diffusers_bench.py --model DIR --size 512 --batch 1,4 [--dtype fp32|bf16] [--vae]
    /work/venv/bin/python Benchmarks/diffusers_bench.py --model DIR --size 512 --batch 1 --dtype bf16 --serve
        (one batch size; after loading and a warm-up prints {"ready": …}, then times one iteration per
        `run` line read from stdin and prints {"seconds": …}: `ssd-bench unet --interleave N`)
    /work/venv/bin/python Benchmarks/diffusers_bench.py --model DIR --size 1024 --vae-only   (VAE decode only, fp32)
    /work/venv/bin/python Benchmarks/diffusers_bench.py --model DIR --size 512 --batch 1,4,8,16 --pipeline --steps 3
        (whole StableDiffusionXLPipeline generations: `ssd-bench pipeline`'s counterpart)

Prints the torch/diffusers versions, then one JSON object (last line): seconds per iteration per
batch, iterations/s, GFLOP/s (FLOPs counted with a forward hook on conv/linear/SDPA), memory idle
(RSS after loading) and peak (max RSS).
"""
import argparse
import ctypes
import gc
import json
import resource
import time

import torch
import torch.nn.functional as F


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def count_flops(unet, inputs):
    """FLOPs of one UNet call: 2·MACs of every conv/linear, 4·B·H·Nq·Nk·D per attention."""
    total = [0.0]
    hooks = []

    def conv_hook(m, inp, out):
        k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        total[0] += 2.0 * out.numel() * k

    def linear_hook(m, inp, out):
        total[0] += 2.0 * out.numel() * m.in_features

    for m in unet.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    orig = F.scaled_dot_product_attention

    def sdpa(q, k, v, *a, **kw):
        total[0] += 4.0 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
        return orig(q, k, v, *a, **kw)

    F.scaled_dot_product_attention = sdpa
    try:
        with torch.inference_mode():
            unet(*inputs[0], **inputs[1])
    finally:
        F.scaled_dot_product_attention = orig
        for h in hooks:
            h.remove()
    return total[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", default="1")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--vae", action="store_true", help="also time one VAE decode per batch size")
    ap.add_argument("--serve", action="store_true", help="time one iteration per `run` line on stdin (one batch size)")
    ap.add_argument("--vae-only", action="store_true", help="only the VAE decode (fp32), with the RSS it adds")
    ap.add_argument("--latents", help="--vae-only: raw float32 NCHW latents to decode (else seeded noise)")
    ap.add_argument("--save-image", help="--vae-only: write the decoded image here (raw float32 NCHW)")
    ap.add_argument("--vae-tiling", action="store_true", help="--vae-only: vae.enable_tiling() first")
    ap.add_argument("--pipeline", action="store_true", help="whole generations with StableDiffusionXLPipeline")
    ap.add_argument("--steps", type=int, default=3, help="--pipeline: denoising steps per generation")
    ap.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    ap.add_argument("--negative-prompt", default="blurry, low quality")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.vae_only:
        return vae_only(a)
    if a.pipeline:
        return pipeline(a)
    import diffusers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads),"
          f" diffusers {diffusers.__version__}", flush=True)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    rss0 = rss_bytes()
    unet = UNet2DConditionModel.from_pretrained(f"{a.model}/unet", torch_dtype=dtype).eval()
    vae = AutoencoderKL.from_pretrained(f"{a.model}/vae", torch_dtype=torch.float32).eval() if a.vae else None
    sched = EulerDiscreteScheduler.from_pretrained(f"{a.model}/scheduler")
    sched.set_timesteps(4)
    idle = rss_bytes()
    lat = a.size // 8
    result = {"torch": torch.__version__, "diffusers": diffusers.__version__, "dtype": a.dtype, "size": a.size,
              "memory_idle_bytes": idle, "memory_weights_bytes": idle - rss0, "batches": {}}
    for b in [int(x) for x in a.batch.split(",")]:
        g = torch.Generator().manual_seed(0)
        sample = torch.randn(b, 4, lat, lat, generator=g)
        ctx = torch.randn(2 * b, 77, 2048, generator=g).to(dtype)
        added = {"text_embeds": torch.randn(2 * b, 1280, generator=g).to(dtype),
                 "time_ids": torch.tensor([[a.size, a.size, 0, 0, a.size, a.size]] * (2 * b), dtype=dtype)}
        t = sched.timesteps[0]

        def iteration():
            x = torch.cat([sample] * 2)
            x = sched.scale_model_input(x, t).to(dtype)
            eps = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample.float()
            uncond, text = eps.chunk(2)
            guided = uncond + 5.0 * (text - uncond)
            sched._step_index = 0
            return sched.step(guided, t, sample).prev_sample

        if a.serve:
            return serve(iteration, result)
        with torch.inference_mode():
            iteration()  # warm-up
            times = []
            for _ in range(a.iterations):
                t0 = time.perf_counter()
                iteration()
                times.append(time.perf_counter() - t0)
            entry = {"seconds": min(times), "it_per_s": 1 / min(times)}
            flops = count_flops(unet, ((sched.scale_model_input(torch.cat([sample] * 2), t).to(dtype), t),
                                       {"encoder_hidden_states": ctx, "added_cond_kwargs": added}))
            entry["gflop"] = flops / 1e9
            entry["gflops_per_s"] = flops / min(times) / 1e9
            if vae is not None:
                z = torch.randn(b, 4, lat, lat, generator=g)
                vae.decode(z)
                t0 = time.perf_counter()
                vae.decode(z)
                entry["vae_decode_seconds"] = time.perf_counter() - t0
        result["batches"][str(b)] = entry
        print(f"batch {b}: {entry['seconds']:.3f} s/it ({entry['gflops_per_s']:.1f} GFLOP/s)", flush=True)
    result["memory_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


def serve(iteration, result):
    """`--serve`: after a warm-up, one timed iteration per `run` line on stdin, each answered with
    {"seconds": …} on stdout, so that the caller can alternate its own iterations with these in the
    same seconds (this shared machine's speed changes from one stretch of seconds to the next)."""
    import sys

    with torch.inference_mode():
        iteration()  # warm-up
        print(json.dumps({"ready": True, **result}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            t0 = time.perf_counter()
            iteration()
            print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)


def reset_peak_rss():
    """Starts a new VmHWM measurement (Linux `clear_refs`), as `ssd-bench` does for its side."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def pipeline(a):
    """Whole generations (`StableDiffusionXLPipeline`: both text encoders, guidance 9, the folder's
    scheduler, VAE decode) per batch size: denoising it/s over the steps after the first (the time
    between `callback_on_step_end` calls), the whole call's seconds, RSS idle with every component
    loaded and peak over each generation. One warm-up generation (1 step, batch 1) first."""
    import diffusers
    import transformers
    from diffusers import StableDiffusionXLPipeline

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    device = "cuda" if a.dtype == "fp16" else "cpu"
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads),"
          f" diffusers {diffusers.__version__}", flush=True)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    pipe = StableDiffusionXLPipeline.from_pretrained(a.model, torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    gc.collect()
    try:  # give the loader's freed transient copies back before reading the idle RSS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    idle = rss_bytes()
    result = {"torch": torch.__version__, "diffusers": diffusers.__version__, "dtype": a.dtype, "size": a.size,
              "steps": a.steps, "memory_idle_bytes": idle, "batches": {}}

    def generate(batch, steps, ends):
        def on_step_end(_pipe, _i, _t, kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            ends.append(time.perf_counter())
            return kwargs
        with torch.inference_mode():
            pipe(a.prompt, negative_prompt=a.negative_prompt, num_images_per_prompt=batch, height=a.size, width=a.size,
                 num_inference_steps=steps, guidance_scale=9.0, generator=torch.Generator(device).manual_seed(1),
                 output_type="np", callback_on_step_end=on_step_end)

    generate(1, 1, [])  # warm-up
    for b in [int(x) for x in a.batch.split(",")]:
        reset_peak_rss()
        ends = []
        t0 = time.perf_counter()
        generate(b, a.steps, ends)
        total = time.perf_counter() - t0
        gaps = [y - x for x, y in zip(ends, ends[1:])]
        entry = {"it_per_s": len(gaps) / sum(gaps) if gaps else None, "generation_seconds": total,
                 "memory_peak_bytes": peak_rss_bytes()}
        result["batches"][str(b)] = entry
        its = f"{entry['it_per_s']:.3f}" if entry["it_per_s"] else "-"
        print(f"batch {b}: {its} it/s, generation {total:.1f} s, RSS idle {idle / 2**30:.2f} → peak "
              f"{entry['memory_peak_bytes'] / 2**30:.2f} GiB", flush=True)
    print(json.dumps(result))


def vae_only(a):
    """Times VAE decodes (a warm-up, then `--iterations`, best kept) and reports the RSS they add."""
    import diffusers
    from diffusers import AutoencoderKL

    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads),"
          f" diffusers {diffusers.__version__}", flush=True)
    vae = AutoencoderKL.from_pretrained(f"{a.model}/vae", torch_dtype=torch.float32).eval()
    if a.vae_tiling:
        vae.enable_tiling()
    lat = a.size // 8
    result = {"torch": torch.__version__, "diffusers": diffusers.__version__, "size": a.size, "batches": {}}
    for b in [int(x) for x in a.batch.split(",")]:
        z = torch.randn(b, 4, lat, lat, generator=torch.Generator().manual_seed(4))
        if a.latents:
            import numpy as np
            z = torch.from_numpy(np.fromfile(a.latents, dtype=np.float32).reshape(b, 4, lat, lat))
        before = rss_bytes()
        with torch.inference_mode():
            times = []
            for _ in range(1 + a.iterations):
                t0 = time.perf_counter()
                image = vae.decode(z).sample
                times.append(time.perf_counter() - t0)
        if a.save_image:
            image.float().numpy().tofile(a.save_image)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        entry = {"vae_decode_seconds": min(times[1:] or times), "rss_before_bytes": before, "rss_peak_bytes": peak}
        result["batches"][str(b)] = entry
        print(f"batch {b}: VAE decode {entry['vae_decode_seconds']:.2f} s, RSS {before / 2**30:.2f} → peak {peak / 2**30:.2f} GiB",
              flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
