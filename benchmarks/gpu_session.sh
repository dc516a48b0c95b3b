#!/usr/bin/env bash
# Reproduce the GPU figures in BENCHMARKS.md: run from the repo root on a CUDA machine (OUT=<folder for results>).
# Wheels the GPU box lacks can be put in .devwheels/ (pip download --no-deps ...) and are installed from there.
# One prepared GPU session: install missing wheels, then benchmarks and the CPU/CUDA comparison.
set -u
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python -c "import torch;print(torch.__version__, torch.version.cuda)" | tee -a $OUT/gpu.txt
[ -d .devwheels ] && for m in diffusers importlib_metadata zipp huggingface_hub safetensors imageio tqdm; do
  python -c "import $m" 2>/dev/null || python -m pip install -q --root-user-action=ignore --no-index --no-deps .devwheels/${m}-*.whl 2>&1 | tail -2
done
python -c "import diffusers; print(diffusers.__version__)"; python -c "import imageio_ffmpeg" 2>/dev/null && echo "ffmpeg ok" || echo "no imageio_ffmpeg"
run() { name=$1; shift; echo "== $name"; timeout 200 "$@" > $OUT/$name.json 2> $OUT/$name.err; echo "rc=$?"; tail -c 600 $OUT/$name.json; grep -v -i "warn\|float32: \[\]" $OUT/$name.err | tail -3; }
run unet_sv4d2 python benchmarks/bench_unet.py --full --device cuda --repeats 3
run unet_8views python benchmarks/bench_unet.py --full --variant sv4d2_8views --device cuda --repeats 3
run unet_sv4d2_chunked python benchmarks/bench_unet.py --full --device cuda --repeats 2 --chunk-attention 4096 --chunk-ff 8192
run pipeline_sv4d2 python benchmarks/bench_pipeline.py --full --device cuda --steps 10
run cuda_vs_cpu python benchmarks/cuda_vs_cpu.py
