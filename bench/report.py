"""The benchmark's results: the ratios between cases, the JSON document and the table."""

from __future__ import annotations

from typing import Any

from .run import TAESD, UNGUIDED, WINDOW, CaseResult, image_difference

EAGER_PATH, OPTIMISED_PATH = "eager", "optimised"
PATHS = (EAGER_PATH, OPTIMISED_PATH)


def ratios(results: list[CaseResult]) -> dict[str, dict[str, Any]]:
    """How the cases compare.

    * ``guided_over_unguided``: a guided step's time over an unguided one's, per path and mode
      (what the guidance costs on top of denoising);
    * ``optimised_speedup_step`` and ``optimised_speedup_end_to_end``: eager time over
      optimised time, per guidance (above 1: the optimised path is faster);
    * ``optimised_vs_eager_image``: how far the optimised path's final image is from the
      eager one's, same seed, in 0-255 levels;
    * ``window_over_fast``: end to end with guidance over the first 60 % of the steps, over
      guidance on every step, per path (below 1: what the window saves);
    * ``taesd_over_fast``: end to end with TAESD decoding for the losses, over the VAE, per path.
    """
    cases = {(r.path, r.guidance): r for r in results}
    guided = sorted({r.guidance for r in results} - {UNGUIDED, WINDOW, TAESD})
    out: dict[str, dict[str, Any]] = {
        "guided_over_unguided": {},
        "optimised_speedup_step": {},
        "optimised_speedup_end_to_end": {},
        "optimised_vs_eager_image": {},
        "window_over_fast": {},
        "taesd_over_fast": {},
    }
    for path in PATHS:
        fast = cases.get((path, "fast"))
        for name, guidance in (("window_over_fast", WINDOW), ("taesd_over_fast", TAESD)):
            case = cases.get((path, guidance))
            if case and fast:
                out[name][path] = case.end_to_end_s / fast.end_to_end_s
        base = cases.get((path, UNGUIDED))
        for mode in guided:
            case = cases.get((path, mode))
            if base and case and base.step_s and case.step_s:
                out["guided_over_unguided"][f"{path}/{mode}"] = case.step_s / base.step_s
    for guidance in [*guided, UNGUIDED]:
        eager, fast = cases.get((EAGER_PATH, guidance)), cases.get((OPTIMISED_PATH, guidance))
        if not (eager and fast):
            continue
        if eager.step_s and fast.step_s:
            out["optimised_speedup_step"][guidance] = eager.step_s / fast.step_s
        out["optimised_speedup_end_to_end"][guidance] = eager.end_to_end_s / fast.end_to_end_s
        out["optimised_vs_eager_image"][guidance] = image_difference(eager.image, fast.image)
    return out


def document(machine: dict[str, Any], settings: dict[str, Any], models: dict[str, Any], results: list[CaseResult]) -> dict[str, Any]:
    """The JSON document of one benchmark run."""
    return {
        "schema": 1,
        "machine": machine,
        "settings": settings,
        "models": models,
        "cases": [r.figures() for r in results],
        "ratios": ratios(results),
    }


def table(doc: dict[str, Any]) -> str:
    """The run as a readable table, with its ratios underneath."""
    kind = doc["cases"][0]["memory_kind"] if doc["cases"] else ""
    header = f"{'path':<10} {'guidance':<11} {'step ms':>9} {'1st frame s':>12} {'end-to-end s':>13} {'warm-up s':>10} {'peak MB':>9}"
    job = doc["settings"]["config"]
    lines = [
        f"{doc['models']['name']} on {doc['machine']['device_name']} ({doc['machine']['device']}, {doc['machine']['torch_threads']} threads)",
        f"{job['size']} px, {job['steps']} steps x strength {job['strength']}, start {job['start']}, {job['n_patches']} patches, "
        f"a frame every {job['preview_every']} steps, {doc['settings']['dtype']}",
        header,
    ]
    for case in doc["cases"]:
        step = f"{case['step_s'] * 1000:9.1f}" if case["step_s"] is not None else f"{'-':>9}"
        lines.append(
            f"{case['path']:<10} {case['guidance']:<11} {step} {case['first_frame_s']:12.3f} {case['end_to_end_s']:13.3f} "
            f"{case['warmup_s']:10.2f} {case['peak_memory_mb']:9.0f}"
        )
    lines.append(f"peak MB is {kind}")
    lines.extend(_profile_lines(doc["cases"]))
    for name, values in doc["ratios"].items():
        for key, value in values.items():
            shown = f"max {value['max']:.0f}, mean {value['mean']:.2f} levels" if isinstance(value, dict) else f"{value:.2f}x"
            lines.append(f"{name} {key}: {shown}")
    return "\n".join(lines)


def _profile_lines(cases: list[dict[str, Any]]) -> list[str]:
    """One line per profiled case: how busy the device was, launches per step, and the costliest operator."""
    lines = []
    for case in cases:
        prof = case.get("profile")
        if not prof:
            continue
        busy = f"device busy {prof['device_busy_fraction']:.0%}, " if prof["device_busy_fraction"] is not None else ""
        top = prof["top"][0] if prof["top"] else {"name": "-", "self_ms": 0.0}
        lines.append(
            f"profile {case['path']}/{case['guidance']}: {busy}{prof['operator_calls_per_step']:.0f} operator calls and "
            f"{prof['device_kernels_per_step']:.0f} kernels per step; costliest {top['name']} ({top['self_ms']:.1f} ms over the job)"
        )
    return lines
