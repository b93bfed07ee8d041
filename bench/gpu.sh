#!/usr/bin/env bash
# The GPU runs behind the performance targets, in one command: CUDA-only tests, then the
# benchmark at the targets' settings (512 px, 50 steps, 32 patches, bf16) for the latent
# backend (eager against the CUDA graphs of whole steps) and at 256 px for the pixel backend,
# the slider-tweaking reruns, and the graph-break check on real-size models.
#
#   bash bench/gpu.sh OUT_DIR [tests] [latent] [pixel] [rerun] [graphs]     (default: all five)
#
# Each part writes into OUT_DIR as it goes (the benchmark rewrites its JSON after every case),
# so a run cut short keeps what it measured. REPEATS (default 3) sets the timed jobs per case;
# PROFILE=0 leaves out the profiled job of each case; COMPILE_MODE (e.g. reduce-overhead) times
# torch.compile as the optimised path instead of the CUDA graphs.
set -uo pipefail
out=${1:?usage: bash bench/gpu.sh OUT_DIR [tests] [latent] [pixel] [rerun] [graphs]}
shift
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests latent pixel rerun graphs)
profile=$([ "${PROFILE:-1}" = 1 ] && echo --profile)
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
tag="$(python -c 'import torch; print(torch.cuda.get_device_name(0).split()[1].lower())')-$(date +%F)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

for part in "${parts[@]}"; do
    case "$part" in
    tests)
        python -m pytest -q -p no:cacheprovider tests/test_bench.py tests/test_sampler.py tests/test_cuda.py tests/test_prepared.py tests/test_graphs.py \
            -k "cuda or never_waits or captured or capture" 2>&1 | tee "$out/tests.log"
        ;;
    latent)
        python -m bench --device cuda --backend latent --size 512 --steps 50 --strength 1 --patches 32 --dtype bf16 \
            --repeats "${REPEATS:-3}" ${COMPILE_MODE:+--compile-mode "$COMPILE_MODE"} $profile \
            --out "$out/$tag-sd15${COMPILE_MODE:+-$COMPILE_MODE}.json" 2>&1 | tee "$out/latent.log"
        ;;
    pixel)
        python -m bench --device cuda --backend pixel --size 256 --steps 50 --strength 1 --patches 32 --dtype bf16 \
            --repeats "${REPEATS:-3}" ${COMPILE_MODE:+--compile-mode "$COMPILE_MODE"} $profile \
            --out "$out/$tag-church256${COMPILE_MODE:+-$COMPILE_MODE}.json" 2>&1 | tee "$out/pixel.log"
        ;;
    rerun)
        # Slider tweaking: cold, warm (picture prepared) and a 256 px live preview, SD 1.5 architecture at 512 px, per path.
        python -m bench --device cuda --backend latent --size 512 --steps 50 --strength 1 --patches 32 --dtype bf16 \
            --rerun --preview-size 256 --repeats "${REPEATS:-3}" --out "$out/$tag-sd15-rerun.json" 2>&1 | tee "$out/rerun.log"
        ;;
    graphs)
        # Nothing in the step loop may stop a capture: graph breaks of each callable, real-size models on CUDA.
        python -m bench --device cuda --backend latent --size 512 --patches 32 --dtype bf16 --check-graphs \
            --out "$out/$tag-sd15-graphs.json" 2>&1 | tee "$out/graphs.log"
        ;;
    *)
        echo "bench/gpu.sh: unknown part '$part' (tests, latent, pixel, rerun, graphs)" >&2
        exit 2
        ;;
    esac
done
