"""A batch's per-picture work: one picture stylized and its files written, with models loaded once per process or Ray actor."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from ..config import StyleConfig, environment
from ..errors import StylizerError
from ..images import save_animation
from ..request import check_request, prompt_notes
from .batch_plan import BatchItem, BatchSpec, Outcome, Outcomes, write_atomically


class PictureWorker:
    """Stylizes the pictures of a batch one at a time, with models loaded once (per process or Ray actor)."""

    def __init__(self, spec: BatchSpec, threads: int | None = None) -> None:
        """Load the models.

        Args:
            spec: the batch's shared settings.
            threads: torch's CPU threads for this worker (None: the process's setting). Results on
                the CPU are bit-identical between runs with the same number of threads.
        """
        import torch

        from ..loading import load_models

        if threads is not None:
            torch.set_num_threads(threads)
        self.spec = spec
        self.models = load_models(spec.model, spec.device, spec.clip)
        # Said once for the whole batch, not with every picture.
        self.shared_notes = set(prompt_notes(StyleConfig.from_dict(spec.config)))

    def __call__(self, item: BatchItem) -> Outcome:
        """Stylize one picture and write its files; a failure becomes the outcome's reason, never an exception."""
        try:
            return self._stylize(item)
        except StylizerError as exc:
            return Outcome(item.path, False, str(exc))
        except Exception as exc:  # one picture's bug or exhausted memory must not end the batch
            if environment.is_set("STYLIZER_DEBUG"):
                raise
            return Outcome(item.path, False, f"internal error: {type(exc).__name__}: {exc}")

    def _stylize(self, item: BatchItem) -> Outcome:
        from ..engine.sampler import stylize

        spec = self.spec
        job = check_request(item.path, spec.config, spec.limits, mask=spec.mask, style_image=spec.style_image)
        started = time.perf_counter()
        frames = list(stylize(self.models, job, optimize=spec.optimize))
        seconds = time.perf_counter() - started
        result = frames[-1]
        png = spec.output(item.name, ".png")
        record = {"input": item.path, "input_sha256": item.sha256, "output": str(png), **spec.identity, "device": str(self.models.device)}
        # First a record without results: the files about to be written are this command's, whatever happens next.
        self._write_record(item, record)
        write_atomically(png, spec.token, lambda path: result.image.save(path, format="PNG"))
        if spec.frames:
            write_atomically(spec.output(item.name, ".gif"), spec.token, lambda path: save_animation([f.image for f in frames], path))
        # The whole record goes last: it is what marks the picture as finished.
        self._write_record(item, {**record, "losses": result.losses, "seconds": round(seconds, 3)})
        return Outcome(item.path, True, notes=[note for note in job.notes if note not in self.shared_notes])

    def _write_record(self, item: BatchItem, record: dict) -> None:
        text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        write_atomically(self.spec.output(item.name, ".json"), self.spec.token, lambda path: path.write_text(text, encoding="utf-8"))


def local_outcomes(spec: BatchSpec, items: Sequence[BatchItem]) -> Outcomes:
    """Each item's outcome, stylized one after another in this process (the models load before the first)."""
    if not items:
        return
    worker = PictureWorker(spec)
    for item in items:
        yield worker(item)
