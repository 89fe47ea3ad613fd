"""Writes a diffusers-layout model folder with random weights of the exact SSD-1B or SDXL
architecture (UNet, VAE, both text encoders; configs from /work/shared/reference/ssd1b-spec.md),
for `ssd-bench unet --model DIR` and `Benchmarks/diffusers_bench.py`.

    /work/venv/bin/python Benchmarks/make_random_model.py --arch ssd1b --out /tmp/ssd1b-random [--dtype fp16]

Tokenizer/scheduler files are copied from Tests/Fixtures/pipeline/tiny-ssd1b (token ids only
need to be valid; the text encoders have the real vocabulary size). Not committed: ~2.6 GB (fp16).
"""
import argparse
import json
import os
import shutil

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "Tests", "Fixtures", "pipeline", "tiny-ssd1b")

SDXL_UNET = {
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": None, "num_class_embeds": None,
    "only_cross_attention": False, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "resnet_time_scale_shift": "default",
    "sample_size": 128, "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False, "use_linear_projection": True,
}
SSD1B_UNET = dict(SDXL_UNET, mid_block_type="UNetMidBlock2D",
                  transformer_layers_per_block=[[1, 1], [2, 2], [4, 4]],
                  reverse_transformer_layers_per_block=[[4, 4, 10], [2, 1, 1], 1])
SDXL_VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True,
}
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              hidden_act="quick_gelu", projection_dim=768, vocab_size=49408, max_position_embeddings=77)
CLIP_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              hidden_act="gelu", projection_dim=1280, vocab_size=49408, max_position_embeddings=77)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["ssd1b", "sdxl"], default="ssd1b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp16")
    ap.add_argument("--skip-text-encoders", action="store_true")
    a = ap.parse_args()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    dtype = torch.float16 if a.dtype == "fp16" else torch.float32
    torch.manual_seed(0)
    os.makedirs(a.out, exist_ok=True)
    unet = UNet2DConditionModel(**(SSD1B_UNET if a.arch == "ssd1b" else SDXL_UNET))
    print("unet parameters", sum(p.numel() for p in unet.parameters()))
    unet.to(dtype).save_pretrained(os.path.join(a.out, "unet"))
    del unet
    AutoencoderKL(**SDXL_VAE).to(dtype).save_pretrained(os.path.join(a.out, "vae"))
    if not a.skip_text_encoders:
        CLIPTextModel(CLIPTextConfig(**CLIP_L)).to(dtype).save_pretrained(os.path.join(a.out, "text_encoder"))
        CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)).to(dtype).save_pretrained(os.path.join(a.out, "text_encoder_2"))
    for sub in ["tokenizer", "tokenizer_2", "scheduler"]:
        shutil.copytree(os.path.join(FIXTURE, sub), os.path.join(a.out, sub), dirs_exist_ok=True)
    shutil.copy(os.path.join(FIXTURE, "model_index.json"), os.path.join(a.out, "model_index.json"))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
