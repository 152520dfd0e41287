#!/usr/bin/env bash
# Core figures for the README: probe training on clothing-top10 with a cold and a warm embedding
# cache, then evaluation of the resulting model. Run with `make bench` (needs the data).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
if [ -z "${WARDROBE_DATA_DIR:-}" ] && [ -d ../shared/data/clothing-dataset ]; then export WARDROBE_DATA_DIR="$(cd ../shared/data && pwd)"; fi
out=$(mktemp -d)
export WARDROBE_CACHE_DIR="$out/cache"   # cold cache: the first run extracts every embedding
echo "machine: $(nproc) cores, $("$BIN/python" -c "from wardrobe.evaluation.speed import cpu_model; print(cpu_model())")"
t0=$(date +%s.%N)
"$BIN/wardrobe" train clothing-top10 --out "$out/run" > /dev/null
t1=$(date +%s.%N)
"$BIN/wardrobe" train clothing-top10 --out "$out/run2" > /dev/null
t2=$(date +%s.%N)
"$BIN/wardrobe" evaluate "$out/run" clothing-top10 --out "$out/eval" > /dev/null
"$BIN/python" - "$out" "$t0" "$t1" "$t2" <<'PY'
import json, sys
out, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
m = json.load(open(f"{out}/run/metrics.json"))
e = json.load(open(f"{out}/eval/metrics.json"))
print(f"wardrobe train clothing-top10 (the default probe), cold cache: {t1 - t0:.1f} s wall, "
      f"validation accuracy {m['accuracy']:.4f}, macro-F1 {m['f1_macro']:.4f}")
print(f"same command, warm cache: {t2 - t1:.1f} s wall")
print(f"wardrobe evaluate on the validation split: accuracy {e['accuracy']:.4f}, macro-F1 {e['f1_macro']:.4f}, "
      f"weighted-F1 {e['f1_weighted']:.4f}, mAP {e['map_macro']:.4f}, top-3 {e['top3_accuracy']:.4f}")
PY
rm -rf "$out"
