"""CUDA-only checks of the worker, kept free of gradio so that bench/gpu.sh can run them on a bare GPU machine."""

from __future__ import annotations

import pytest
import torch

from stylizer.serving.worker import Worker

FAST = {"size": 64, "steps": 4}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_memory_returns_to_baseline_after_each_job(tmp_path, picture_path):
    gpu = Worker("tiny", ["cuda"], output_dir=tmp_path)
    list(gpu.run(gpu.check(picture_path, {"prompt": "ink", **FAST})))
    baseline = torch.cuda.memory_allocated()
    for _ in range(3):
        list(gpu.run(gpu.check(picture_path, {"prompt": "ink", **FAST})))
        assert torch.cuda.memory_allocated() <= baseline
