"""The real architectures of the default presets, as their checkpoints' config files give them.

Built with random weights (no download), they cost what the trained models cost to
run: the same layers, widths and attention, so the same kernels and memory.
"""

from __future__ import annotations

# stable-diffusion-v1-5/stable-diffusion-v1-5, unet/config.json.
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)

# stable-diffusion-v1-5, vae/config.json.
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

# stable-diffusion-v1-5, text_encoder/config.json: the text tower of OpenAI's CLIP ViT-L/14.
SD15_TEXT_ENCODER = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    dropout=0.0,
    initializer_range=0.02,
    initializer_factor=1.0,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

# stable-diffusion-v1-5, scheduler/scheduler_config.json (a PNDM config; the sampler reads its schedule).
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    clip_sample=False,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    trained_betas=None,
)

# google/ddpm-ema-church-256, config.json.
CHURCH_UNET = dict(
    sample_size=256,
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    flip_sin_to_cos=False,
    freq_shift=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    block_out_channels=(128, 128, 256, 256, 512, 512),
    layers_per_block=2,
    downsample_padding=0,
    mid_block_scale_factor=1,
    act_fn="silu",
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
)

# google/ddpm-ema-church-256, scheduler_config.json (a DDPM config).
CHURCH_SCHEDULER = dict(
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    num_train_timesteps=1000,
    clip_sample=True,
    variance_type="fixed_small",
    trained_betas=None,
)

# The default guidance CLIP: open_clip's ViT-B-32 with OpenAI's quick GELU, as its "openai" weights use.
GUIDE_CLIP = "ViT-B-32"
