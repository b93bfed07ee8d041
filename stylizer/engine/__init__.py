"""The engine: the guided DDIM loop and everything it computes with, on tensors.

The losses (:mod:`.losses`), the CLIP and VGG16 wrappers (:mod:`.encoders`, :mod:`.prompts`), the
per-job objective (:mod:`.objective`), the mask and colour controls (:mod:`.mask`, :mod:`.colors`,
:mod:`.finish`), the diffusion backends (:mod:`.backends`), one step as a pure function (:mod:`.ddim`,
:mod:`.step`) and its CUDA graphs (:mod:`.graphs`), the optimisation switch (:mod:`.optimization`),
the prepared picture and its cache (:mod:`.prepared`), the sampler (:mod:`.sampler`), the start-up
capture (:mod:`.warmup`) and the loaded model set (:mod:`.models`). The engine imports nothing above
it (no loading, serving or front end) and never asks where it runs: whoever calls it decides.
"""
