#!/usr/bin/env bash
# The CUDA check: every GPU path of the solver, timed and compared with torch, in one call that fits in 8 minutes
# on one GPU. Usage: tools/gpu_check.sh OUT_DIR [--dry-run]
#
# Each step has its own time limit and the whole check a deadline (a step gets what is left of it); a step that
# fails or runs out of time is recorded in OUT_DIR/summary.txt and the next one runs. --dry-run prints the steps
# with their limits and runs nothing. PYTHON (default: python) is the interpreter with the project installed.
set -u

usage="usage: tools/gpu_check.sh OUT_DIR [--dry-run]"
out="" dry=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "error: unknown option $arg ($usage)" >&2; exit 2 ;;
    *) if [ -n "$out" ]; then echo "error: one OUT_DIR only, got $out and $arg" >&2; exit 2; fi; out="$arg" ;;
  esac
done
if [ -z "$out" ]; then echo "error: OUT_DIR is missing ($usage)" >&2; exit 2; fi
case "$out" in *[[:space:]]*) echo "error: OUT_DIR '$out' holds a space; give a path without one" >&2; exit 2 ;; esac
if [ -e "$out" ] && [ ! -d "$out" ]; then echo "error: OUT_DIR $out exists and is not a folder" >&2; exit 2; fi

cd "$(dirname "$0")/.." || exit 2
py="${PYTHON:-python}"
deadline_s=450  # the sum of the steps' own limits is larger: the deadline keeps the whole inside 8 minutes
digits=(--cfg cfgs/digits/resnet18_sgd_step.yaml SOLVER.AMP.ENABLED True)
shapes=(--cfg cfgs/shapes/fcos_resnet18_sgd_cosine.yaml SOLVER.SCHEDULER.TOTAL_ITERS 50
        SOLVER.SCHEDULER.WARM_UP_ITERS 10 TRAIN.EVAL_PERIOD 0)

# name | limit in seconds | command
steps=(
  "bench_solver|110|$py tools/bench_solver.py --device cuda --repeats 9 --out $out/bench_solver.md"
  "differential|70|env PET_TEST_DEVICE=cuda $py -m pytest -q -p no:cacheprovider tests/solver/test_against_torch.py"
  "digits_float16|45|$py tools/train_net.py ${digits[*]} SOLVER.AMP.DTYPE float16 OUTPUT_DIR $out/runs/digits_float16"
  "digits_bfloat16|45|$py tools/train_net.py ${digits[*]} SOLVER.AMP.DTYPE bfloat16 OUTPUT_DIR $out/runs/digits_bfloat16"
  "shapes|60|$py tools/train_net.py ${shapes[*]} OUTPUT_DIR $out/runs/shapes DATA.ROOT $out/datasets"
  "end_to_end|100|$py tools/bench_end_to_end.py --rounds 1 --jobs digits --out $out/bench_end_to_end.md"
  "knobs|120|$py tools/bench_knobs.py --rounds 1 --jobs digits --out $out/bench_knobs.md"
  "fsdp_nccl|45|$py -m torch.distributed.run --nproc_per_node 1 tools/train_net.py --cfg cfgs/digits/resnet18_sgd_step.yaml DISTRIBUTED.STRATEGY FSDP SOLVER.SCHEDULER.TOTAL_ITERS 20 SOLVER.SCHEDULER.STEPS (10,) SOLVER.SCHEDULER.WARM_UP_ITERS 5 OUTPUT_DIR $out/runs/fsdp"
)

if [ "$dry" = 1 ]; then
  echo "tools/gpu_check.sh would run, in this order, within $deadline_s s in all (results under $out):"
  for step in "${steps[@]}"; do
    IFS='|' read -r name limit command <<< "$step"
    printf '  %-16s at most %3s s: %s\n' "$name" "$limit" "$command"
  done
  exit 0
fi

mkdir -p "$out/logs" || exit 2
summary="$out/summary.txt"
{ echo "gpu_check $(date -u +%FT%TZ)"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } > "$summary" 2>&1
start=$SECONDS
for step in "${steps[@]}"; do
  IFS='|' read -r name limit command <<< "$step"
  left=$((deadline_s - (SECONDS - start)))
  if [ "$left" -lt 10 ]; then echo "$name: skipped (deadline reached)" >> "$summary"; continue; fi
  [ "$limit" -gt "$left" ] && limit=$left
  began=$SECONDS
  # Word splitting of $command is intended: the steps hold no quoted arguments.
  timeout --signal=TERM --kill-after=10 "$limit" $command > "$out/logs/$name.log" 2>&1
  code=$?
  verdict="exit code $code"
  [ "$code" = 124 ] && verdict="ran out of its $limit s"
  echo "$name: $verdict after $((SECONDS - began)) s" | tee -a "$summary"
done
echo "total $((SECONDS - start)) s" | tee -a "$summary"
# Per training run: the median ms per update and the final evaluation, from its metrics.json.
$py - "$out/runs" >> "$summary" 2>&1 <<'PY'
import json, os, statistics, sys
root = sys.argv[1]
for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    path = os.path.join(root, name, "metrics.json")
    if not os.path.exists(path):
        continue
    rows = [json.loads(line) for line in open(path)]
    times = [row["time"] for row in rows if "time" in row]
    final = {k: v for row in rows for k, v in row.items() if k in ("val/accuracy", "val/mAP")}
    print(name, f"{1e3 * statistics.median(times):.1f} ms/update" if times else "no times", final)
PY
cat "$summary"
