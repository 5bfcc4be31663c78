#!/usr/bin/env bash
# The CUDA path in one run on one GPU, about 8 minutes on an H100/H200 (the step limits add up to
# 600 s, so that one 10-minute command holds it):
#   1. the tests marked cuda (tests/test_cuda.py: training steps fp32/bf16 against the CPU, the
#      fused encoder, greedy/beam search on the GPU, a bf16 run read back on the CPU);
#   2. bench/gpu_peak.py: the GPU's bf16 and fp32 GEMM peak, the yardstick of utilization;
#   3. bench/train_throughput.py --device cuda, reference and large configs, fp32 and bf16,
#      layer-normalized cell and fused cuDNN path;
#   4. a 3-minute reference training run under bf16-mixed (bench/timed_run.py): validation and
#      test BLEU, peak GPU memory;
#   5. bench/decode_speed.py --device cuda on that checkpoint, greedy and beam 5, three batch sizes;
#   6. bench/compiled_cell.py --device cuda: the layer-normalized LSTM step eager vs torch.compile
#      (its pointwise work fused), forward and backward, at the reference shapes.
# Every step has its own time limit, and a failing step does not stop the others. Everything
# lands in OUT_DIR/gpu_suite.tar.gz (each step's output, steps.jsonl with exit codes and
# seconds) and OUT_DIR/summary.txt, a handful of files, ready to bring back.
#
#   bash bench/gpu_suite.sh OUT_DIR
#
# On a machine without the package's dependencies, bench/gpu_prepare.sh (run where pip works)
# puts the missing wheels in .whl/, Multi30k in .gpu/multi30k and the prepared data in data/;
# this script installs .whl/ first when it is there.
set -uo pipefail
OUT=${1:?usage: bench/gpu_suite.sh OUT_DIR}
RESULTS=$(mktemp -d)
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || echo "warning: installing .whl failed" >&2
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${SEQ2SEQ_MULTI30K_DIR:-}" ]; then
  for candidate in .gpu/multi30k ../shared/data/multi30k; do
    [ -d "$candidate" ] && export SEQ2SEQ_MULTI30K_DIR="$PWD/$candidate" && break
  done
fi

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, keep its output and status
  local name=$1 limit=$2 started=$SECONDS status
  shift 2
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$RESULTS/$name.out" 2>&1
  status=$?
  echo "{\"step\": \"$name\", \"exit\": $status, \"seconds\": $((SECONDS - started))}" \
    | tee -a "$RESULTS/steps.jsonl"
  tail -n 5 "$RESULTS/$name.out"
}

nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1
$PYTHON -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" \
  > "$RESULTS/torch.txt" 2>&1
step cuda_tests 100 $PYTHON -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
step gpu_peak 30 $PYTHON bench/gpu_peak.py
step train_reference 60 $PYTHON bench/train_throughput.py --device cuda --steps 20 --rounds 2
step train_large 60 $PYTHON bench/train_throughput.py --device cuda --steps 20 --rounds 2 \
  --config configs/multi30k_de_en.yaml --config configs/large.yaml --max-tokens 6000
step train_3min 230 $PYTHON bench/timed_run.py fit --config configs/multi30k_de_en.yaml \
  --trainer.accelerator gpu --trainer.devices 1 --trainer.precision bf16-mixed \
  --trainer.max_time 00:00:03:00 --trainer.default_root_dir "$RESULTS/run" \
  --trainer.enable_progress_bar false
step decode 60 $PYTHON bench/decode_speed.py --device cuda \
  --checkpoint "$RESULTS/run/checkpoints/last.ckpt" --batch-tokens 1000,4000,16000
step compiled_cell 60 $PYTHON bench/compiled_cell.py --device cuda --rounds 3
rm -rf "$RESULTS/run/checkpoints"  # 80 MB each: the figures are what comes back
mkdir -p "$OUT"
cat "$RESULTS/steps.jsonl" > "$OUT/summary.txt"
grep -h "bleu\|training ended\|peak_gpu" "$RESULTS/train_3min.out" >> "$OUT/summary.txt"
tar czf "$OUT/gpu_suite.tar.gz" -C "$RESULTS" .
echo "results: $OUT/gpu_suite.tar.gz"
