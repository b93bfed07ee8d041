"""Speed and memory benchmark of Stylizer's guided DDIM step: ``python -m bench --help``.

It times the real code path (:func:`stylizer.engine.sampler.stylize`) on real-size
architectures with random weights, or on a tiny preset, along the eager reference
and the optimised path, guided and unguided, and writes every figure to JSON.
"""
