"""How prompts reach CLIP: the context length and the templates a text is averaged over. No torch here, so the
request checks can count tokens without loading torch."""

# Every guidance CLIP (and Stable Diffusion's text encoder) reads at most this many BPE tokens.
CLIP_CONTEXT_TOKENS = 77

# A subset of the ImageNet prompt templates CLIPstyler averages over.
TEXT_TEMPLATES = (
    "a bad photo of a {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a painting of the {}.",
    "a close-up photo of a {}.",
    "a pixelated photo of the {}.",
    "a sketch of the {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendition of the {}.",
    "a plastic {}.",
    "a photo of the large {}.",
    "art of the {}.",
    "a photo of a small {}.",
    "a photo of a nice {}.",
    "a photo of the weird {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a toy {}.",
    "a {} in a video game.",
    "{}",
)
