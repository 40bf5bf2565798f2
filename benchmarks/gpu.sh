#!/usr/bin/env bash
# Issue 7's GPU checks in one call on a machine with CUDA: the tests on the GPU (those whose id
# names cuda), the throughput protocols with --device cuda, and (1b), nfkit's compiled step.
# Each part rewrites its own section of benchmarks/README.md. Peers come from wheels in .whl/
# when the machine has no network. Logs and the rewritten README go to $OUT (default out/gpu).
#   PARTS="tests bench compiled" REPEATS=3 bash benchmarks/gpu.sh
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
for part in ${PARTS:-tests bench compiled}; do
  case $part in
    tests)
      timeout "${TEST_SECONDS:-240}" python3 -m pytest tests/test_devices.py tests/test_scale.py \
        -q -p no:cacheprovider -k cuda --durations=5 2>&1 | tee "$OUT/tests.log" | tail -25 ;;
    bench)
      (cd benchmarks && timeout "${BENCH_SECONDS:-330}" python3 throughput.py --device cuda \
        --repeats "${REPEATS:-3}") 2>&1 | tee "$OUT/bench.log" | tail -60 ;;
    compiled)
      (cd benchmarks && timeout "${COMPILE_SECONDS:-330}" python3 throughput.py --device cuda \
        --compiled --repeats "${REPEATS:-3}") 2>&1 | tee "$OUT/compiled.log" | tail -40 ;;
  esac
done
cp benchmarks/README.md "$OUT/README.md"
