#!/usr/bin/env bash
# What a session lent a GPU runs, in one call of under 8 minutes (issue 21):
#
#   benchmarks/gpu_check.sh [--results DIR] [--camvid PATH] [--camvid-steps N] [--dry-run]
#
#   1. environment: the GPU (nvidia-smi), Python, NumPy, PyTorch, CuPy -- installed if missing: from wheels
#      carried in .whl/, else `pip install cupy-cudaNNx` for the driver's CUDA major (12 -> cupy-cuda12x);
#   2. the cuda tests on the real GPU (MINIDL_TEST_CUDA=gpu: a GPU that CuPy cannot use is an error, never
#      a silent fall-back to the stand-in);
#   3. SegNetSmall's training step, minidl against PyTorch CUDA: same weights, time ratio, peak device
#      memory (benchmarks/gpu_train_step.py);
#   4. CamVid at 480x360: examples/train_segnet.py --model segnet_basic --class-weights median --device cuda
#      for --camvid-steps steps, with img/s. Skipped, with the reason, where the data is absent.
#
# Everything goes under one results folder (default: $OUT/gpu_check on the device machine, where $OUT comes
# back, else benchmarks/.local/gpu_check): env.txt, tests.log, train_step.log, train_step.json, camvid.log,
# camvid_metrics.json and summary.md -- 7 files, within the device tool's 8.
#
# CamVid on the device machine: it holds a copy of this working tree and nothing else, and the full
# dataset (../shared/data/camvid, 122 MB) is larger than what may travel (64 MiB). So, here, before the call:
#   echo /.camvid/ >> .git/info/exclude
#   benchmarks/gpu_check.sh --pack-camvid ../shared/data/camvid      # a subset in .camvid/ (~15 MB)
# and name .camvid in the run's carry; --camvid defaults to the first of .camvid, shared/data/camvid and
# ../shared/data/camvid that exists.
#
#   benchmarks/gpu_check.sh --pack-camvid SRC [--pack-images N] [--pack-into DIR]
#                                   # N train pairs (default 48) and N/4 val pairs, into DIR (default .camvid)
#   benchmarks/gpu_check.sh --dry-run                             # check the arguments, print the plan, run nothing
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
RESULTS=""
CAMVID=""
CAMVID_STEPS=20
CAMVID_BATCH=2
DRY_RUN=0
PACK_SOURCE=""
PACK_IMAGES=48
PACK_INTO=.camvid
# seconds each step may take: 45 + 210 + 75 + 120 = 7.5 minutes at the very worst
TIME_INSTALL=45 TIME_TESTS=210 TIME_TRAIN_STEP=75 TIME_CAMVID=120

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
die() { echo "gpu_check.sh: $*" >&2; exit 2; }
number() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive whole number, got '$2'"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --results) [ $# -ge 2 ] || die "--results needs a folder"; RESULTS=$2; shift 2 ;;
        --camvid) [ $# -ge 2 ] || die "--camvid needs a path"; CAMVID=$2; shift 2 ;;
        --camvid-steps) [ $# -ge 2 ] || die "--camvid-steps needs a number"; number "$1" "$2"; CAMVID_STEPS=$2; shift 2 ;;
        --pack-camvid) [ $# -ge 2 ] || die "--pack-camvid needs the CamVid folder"; PACK_SOURCE=$2; shift 2 ;;
        --pack-images) [ $# -ge 2 ] || die "--pack-images needs a number"; number "$1" "$2"; PACK_IMAGES=$2; shift 2 ;;
        --pack-into) [ $# -ge 2 ] || die "--pack-into needs a folder"; PACK_INTO=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# ---------------------------------------------------------------------------- --pack-camvid (run here, not there)
if [ -n "$PACK_SOURCE" ]; then
    for split in train trainannot val valannot; do
        [ -d "$PACK_SOURCE/$split" ] || die "$PACK_SOURCE has no $split/ folder: not CamVid in the SegNet tutorial's layout"
    done
    rm -rf "$PACK_INTO" && mkdir -p "$PACK_INTO"/{train,trainannot,val,valannot} || die "cannot create $PACK_INTO"
    for pair in "train $PACK_IMAGES" "val $(( (PACK_IMAGES + 3) / 4 ))"; do
        set -- $pair
        ls "$PACK_SOURCE/$1" | grep '\.png$' | head -n "$2" | while read -r name; do
            cp "$PACK_SOURCE/$1/$name" "$PACK_INTO/$1/" && cp "$PACK_SOURCE/${1}annot/$name" "$PACK_INTO/${1}annot/"
        done
    done
    echo "packed $(ls "$PACK_INTO/train" | wc -l) train and $(ls "$PACK_INTO/val" | wc -l) val pairs into $PACK_INTO" \
         "($(du -sh "$PACK_INTO" | cut -f1)); name it in the device run's carry, and keep it out of git" \
         "(.git/info/exclude)"
    exit 0
fi

# ---------------------------------------------------------------------------- the plan
if [ -z "$RESULTS" ]; then
    if [ -n "${OUT:-}" ]; then RESULTS=$OUT/gpu_check; else RESULTS=benchmarks/.local/gpu_check; fi
fi
if [ -z "$CAMVID" ]; then
    for candidate in .camvid shared/data/camvid ../shared/data/camvid; do
        if [ -d "$candidate/train" ]; then CAMVID=$candidate; break; fi
    done
fi
camvid_state() {
    if [ -z "$CAMVID" ]; then
        echo "absent (none of .camvid, shared/data/camvid, ../shared/data/camvid): skipped; see --pack-camvid"
    elif [ ! -d "$CAMVID/train" ] || [ ! -d "$CAMVID/trainannot" ] || [ ! -d "$CAMVID/val" ] || [ ! -d "$CAMVID/valannot" ]; then
        echo "absent at $CAMVID (train/, trainannot/, val/ and valannot/ needed): skipped; see --pack-camvid"
    else
        echo "$CAMVID ($(ls "$CAMVID/train" | wc -l) train, $(ls "$CAMVID/val" | wc -l) val images)"
    fi
}
CAMVID_COMMAND=(examples/train_segnet.py --data "camvid:$CAMVID" --size 480x360 --model segnet_basic
                --class-weights median --device cuda --epochs 1 --max-steps "$CAMVID_STEPS" --batch-size "$CAMVID_BATCH"
                --out "$RESULTS/camvid_run")
echo "gpu_check.sh plan"
echo "  results:    $RESULTS"
echo "  python:     $PYTHON ($(command -v "$PYTHON" || echo 'not found'))"
echo "  1. environment and CuPy (install if missing, at most ${TIME_INSTALL}s)"
echo "  2. cuda tests on the GPU: MINIDL_TEST_CUDA=gpu $PYTHON -m pytest tests -k cuda (at most ${TIME_TESTS}s)"
echo "  3. train step: $PYTHON benchmarks/gpu_train_step.py --out $RESULTS/train_step.json (at most ${TIME_TRAIN_STEP}s)"
echo "  4. CamVid:     $(camvid_state)"
echo "              $PYTHON ${CAMVID_COMMAND[*]} (at most ${TIME_CAMVID}s)"
if [ "$DRY_RUN" = 1 ]; then
    command -v "$PYTHON" >/dev/null || die "no $PYTHON on this machine"
    echo "dry run: nothing was run"
    exit 0
fi

# ---------------------------------------------------------------------------- the run
mkdir -p "$RESULTS" || die "cannot create $RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SUMMARY=$RESULTS/summary.md
status=0
record() {  # record STEP EXIT_CODE DETAIL: one line of the summary
    local outcome=passed
    [ "$2" = 0 ] || { outcome="FAILED (exit $2)"; status=1; }
    [ "$2" = 124 ] && outcome="TIMED OUT"
    echo "- $1: $outcome${3:+ -- $3}" | tee -a "$SUMMARY"
}
echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git')" > "$SUMMARY"

# 1. environment and CuPy
{
    nvidia-smi 2>&1 || echo "nvidia-smi failed"
    "$PYTHON" -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} > "$RESULTS/env.txt"
if ! "$PYTHON" -c "import cupy" 2>/dev/null; then
    if ls .whl/cupy*.whl >/dev/null 2>&1; then
        site="$PWD/benchmarks/.local/gpu_check_site"  # inside the checkout, ignored by git
        timeout "$TIME_INSTALL" "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl \
            >> "$RESULTS/env.txt" 2>&1 && export PYTHONPATH="$PYTHONPATH:$site"
    else
        cuda_major=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -n 1)
        timeout "$TIME_INSTALL" "$PYTHON" -m pip install -q "cupy-cuda${cuda_major:-12}x" >> "$RESULTS/env.txt" 2>&1
    fi
fi
"$PYTHON" -c "import cupy; print('cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())" \
    >> "$RESULTS/env.txt" 2>&1
cupy_status=$?
record "environment and CuPy" "$cupy_status" "$(tail -n 1 "$RESULTS/env.txt")"
if [ "$cupy_status" != 0 ]; then
    echo "no usable CuPy: the GPU steps cannot run (see $RESULTS/env.txt)" | tee -a "$SUMMARY"
    exit 1
fi

# 2. the cuda tests on the GPU
MINIDL_TEST_CUDA=gpu timeout "$TIME_TESTS" "$PYTHON" -m pytest tests -k cuda -p no:cacheprovider -rfE \
    --continue-on-collection-errors > "$RESULTS/tests.log" 2>&1
code=$?
record "cuda tests on the GPU" "$code" "$(grep -E '[0-9]+ (passed|failed)' "$RESULTS/tests.log" | tail -n 1)"

# 3. SegNetSmall's training step against PyTorch CUDA
timeout "$TIME_TRAIN_STEP" "$PYTHON" benchmarks/gpu_train_step.py --out "$RESULTS/train_step.json" \
    > "$RESULTS/train_step.log" 2>&1
code=$?
record "SegNetSmall train step vs PyTorch CUDA" "$code" \
    "$("$PYTHON" -c "import json, sys; f = json.load(open(sys.argv[1])); print(f\"ratio {f['time ratio (minidl/torch)']:.2f}x, minidl {f['minidl img/s']:.1f} img/s, peak {f['minidl peak device bytes'] / 2**20:.0f} vs {f['torch peak device bytes'] / 2**20:.0f} MiB\")" \
        "$RESULTS/train_step.json" 2>/dev/null)"

# 4. CamVid at 480x360
state=$(camvid_state)
if [[ "$state" == absent* ]]; then
    echo "- CamVid 480x360: skipped -- data $state" | tee -a "$SUMMARY"
else
    timeout "$TIME_CAMVID" "$PYTHON" "${CAMVID_COMMAND[@]}" > "$RESULTS/camvid.log" 2>&1
    code=$?
    cp "$RESULTS/camvid_run/metrics.json" "$RESULTS/camvid_metrics.json" 2>/dev/null
    rm -rf "$RESULTS/camvid_run"  # checkpoints and pictures: too many files to bring back
    record "CamVid 480x360 segnet_basic, $CAMVID_STEPS steps of $CAMVID_BATCH" "$code" \
        "$(grep -o '[0-9.]* img/s' "$RESULTS/camvid.log" | tail -n 1)"
fi
echo "results in $RESULTS"
exit "$status"
