#!/usr/bin/env bash
# The GPU runs behind the performance targets, in one command: CUDA-only tests, then the
# benchmark at the targets' settings (512 px, 50 steps, 32 patches, bf16) for the latent
# backend and at 256 px for the pixel backend, each with a profile of every case.
#
#   bash bench/gpu.sh OUT_DIR [tests] [latent] [pixel] [rerun]     (default: tests latent pixel rerun)
#
# Each part writes into OUT_DIR as it goes (the benchmark rewrites its JSON after every case),
# so a run cut short keeps what it measured. REPEATS (default 3) sets the timed jobs per case;
# COMPILE_MODE (e.g. reduce-overhead, for CUDA graphs) the optimised path's torch.compile mode.
set -uo pipefail
out=${1:?usage: bash bench/gpu.sh OUT_DIR [tests] [latent] [pixel] [rerun]}
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests latent pixel rerun)
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
tag="$(python -c 'import torch; print(torch.cuda.get_device_name(0).split()[1].lower())')-$(date +%F)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

for part in "${parts[@]}"; do
    case "$part" in
    tests)
        python -m pytest -q -p no:cacheprovider tests/test_bench.py tests/test_sampler.py tests/test_cuda.py tests/test_prepared.py -k "cuda or never_waits" 2>&1 | tee "$out/tests.log"
        ;;
    latent)
        python -m bench --device cuda --backend latent --size 512 --steps 50 --strength 1 --patches 32 --dtype bf16 \
            --repeats "${REPEATS:-3}" ${COMPILE_MODE:+--compile-mode "$COMPILE_MODE"} --profile \
            --out "$out/$tag-sd15${COMPILE_MODE:+-$COMPILE_MODE}.json" 2>&1 | tee "$out/latent.log"
        ;;
    pixel)
        python -m bench --device cuda --backend pixel --size 256 --steps 50 --strength 1 --patches 32 --dtype bf16 \
            --repeats "${REPEATS:-3}" ${COMPILE_MODE:+--compile-mode "$COMPILE_MODE"} --profile \
            --out "$out/$tag-church256${COMPILE_MODE:+-$COMPILE_MODE}.json" 2>&1 | tee "$out/pixel.log"
        ;;
    rerun)
        # Slider tweaking: cold, warm (picture prepared) and a 256 px live preview, SD 1.5 architecture at 512 px.
        python -m bench --device cuda --backend latent --size 512 --steps 50 --strength 1 --patches 32 --dtype bf16 \
            --rerun --preview-size 256 --repeats "${REPEATS:-3}" --out "$out/$tag-sd15-rerun.json" 2>&1 | tee "$out/rerun.log"
        ;;
    *)
        echo "bench/gpu.sh: unknown part '$part' (tests, latent, pixel, rerun)" >&2
        exit 2
        ;;
    esac
done
