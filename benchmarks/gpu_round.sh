#!/usr/bin/env bash
# The issue's GPU measurements as one prepared device run (../shared/gpu/README.md's recipe, for this
# repository's layout): the quickstart trained and evaluated on the GPU, then ours vs PyTorch eager
# (bf16 autocast, channels_last) per model, bf16, batch 256, 224x224, 1000 classes, then
# torch.compile's ResNet-50. Every result is appended to $OUT/results.jsonl as soon as it exists
# (the device tool returns at most 8 files), the console to $OUT/log.txt. A global deadline
# (DEADLINE seconds, default 540) skips what would not finish.
#
#   bash benchmarks/gpu_round.sh prepare     # here, once: wheels the GPU machine lacks -> .dev/whl
#                                            # (Python 3.12), PyTorch's script -> .dev/, .dev/ ignored
#   run(command="bash benchmarks/gpu_round.sh", carry=[".dev"], timeout_s=600)   # on the device
#
# Environment: MODELS (default: one per benchmarked family; empty: none), BATCH (256), DEADLINE (540),
# TORCH=0 (ours only), COMPILE=0 (no torch.compile run), PYTHON (python3), WHEELS (.dev/whl; a
# folder without wheels installs nothing: how the script is tried on a CPU); AB_MODELS and AB_FLAGS:
# those models again, ours only, with AB_FLAGS added to XLA_FLAGS (an A/B of a compile lever, e.g.
# AB_FLAGS=--xla_gpu_autotune_level=0 for the first step's autotuning).
set -u
cd "$(dirname "$0")/.."
DEV=.dev
if [ "${1:-}" = prepare ]; then
  grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo /.dev/ >> .git/info/exclude
  mkdir -p $DEV/whl
  for p in ml-collections grain mlxtend tensorboardX array-record portpicker; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d $DEV/whl $p || exit 1
  done
  cp ../shared/torch_baseline/bench_gpu.py $DEV/ || exit 1
  du -sh $DEV; exit 0
fi

T0=$(date +%s); DEADLINE=${DEADLINE:-540}; PY=${PYTHON:-python3}
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
OUT=${OUT:-/tmp/gpu_round}; mkdir -p "$OUT"; RES=$(mktemp -d)
exec > >(tee -a "$OUT/log.txt") 2>&1
WHEELS=${WHEELS:-$DEV/whl}
if ls $WHEELS/*.whl >/dev/null 2>&1; then   # what the GPU machine lacks (see ../shared/gpu/README.md)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $WHEELS/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import jax, flax, zoo, train.loop; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" || exit 1
keep() { [ -s "$1" ] && { $PY -c "import json,sys; print(json.dumps({'what': sys.argv[2], **json.load(open(sys.argv[1]))}))" \
  "$1" "$2" >> "$OUT/results.jsonl"; }; }

echo "== quickstart ($(left) s left)"
t=$(date +%s.%N)
timeout 150 $PY -m train --config configs/lenet5_mnist5k.py --workdir $RES/qs 2>&1 | grep -vE "^step " | tail -6
echo "quickstart wall $(echo "$(date +%s.%N) - $t" | bc) s"
timeout 60 $PY -m train.evaluate --workdir $RES/qs 2>&1 | tail -3

TORCH_ARGS=(--run-torch --torch-python $PY --torch-script $DEV/bench_gpu.py --torch-channels-last)
[ "${TORCH:-1}" = 0 ] && TORCH_ARGS=()
for m in ${MODELS-resnet50 mobilenet_v2 densenet121 shufflenet_v2_x1_0 resnet18 vgg16 efficientnet_b0}; do
  [ "$(left)" -gt 60 ] || { echo "== $m skipped: deadline"; continue; }
  echo "== $m ($(left) s left)"
  timeout $(( $(left) - 5 )) $PY benchmarks/bench.py --models $m --batch ${BATCH:-256} --res 224 --classes 1000 \
    --steps 20 --warmup 3 --precision bfloat16 --max-other-cpu 1000 --retries 0 --matmul-size 8192 \
    "${TORCH_ARGS[@]}" --out-json $RES/$m.json --out-md $RES/$m.md --timeout 240 2>&1 | grep -vE "^\|---" | tail -8
  keep $RES/$m.json "bench $m"
done
for m in ${AB_MODELS:-}; do   # ours again with AB_FLAGS (XLA_FLAGS), e.g. the first step's autotuning
  [ "$(left)" -gt 60 ] || { echo "== $m with $AB_FLAGS skipped: deadline"; continue; }
  echo "== $m with $AB_FLAGS ($(left) s left)"
  timeout $(( $(left) - 5 )) $PY benchmarks/bench.py --models $m --batch ${BATCH:-256} --res 224 --classes 1000 \
    --steps 20 --warmup 3 --precision bfloat16 --max-other-cpu 1000 --retries 0 --no-xla-cost \
    --xla-flags="$AB_FLAGS" --out-json $RES/ab_$m.json --out-md $RES/ab_$m.md --timeout 240 2>&1 | tail -3
  keep $RES/ab_$m.json "bench $m $AB_FLAGS"
done
if [ "${TORCH:-1}" != 0 ] && [ "${COMPILE:-1}" != 0 ] && [ "$(left)" -gt 90 ]; then
  echo "== torch.compile resnet50 ($(left) s left)"
  TORCH_COMPILE=1 timeout $(( $(left) - 5 )) $PY $DEV/bench_gpu.py --models resnet50 --batch ${BATCH:-256} \
    --channels-last --out $RES/torch_compile.json
  keep $RES/torch_compile.json "torch.compile resnet50"
fi
echo "== done in $(( $(date +%s) - T0 )) s; results: $OUT/results.jsonl"
