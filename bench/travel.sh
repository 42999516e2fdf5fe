#!/usr/bin/env bash
# Relevance that travels: every method on Luma held-out and on sets that do not look like Luma, one run.
#
#   bash bench/travel.sh                  # VARIANTS=minimal (title + description catalogues)
#   VARIANTS="minimal full" bash bench/travel.sh
#
# 1. make_travel_eval writes luma/, merged/, shopper/ and negative/ under $EVAL_DIR (generated photos
#    included; nothing is written into the checkout but bench/results).
# 2. Per catalogue (luma, merged) and variant, in its own data folder ($DATA_ROOT/<catalogue>-<variant>:
#    its own embedded PostgreSQL): migrate, import, index, train on the train parents only (the Luma
#    split; a merged SKU is its parent SKU), evaluate every method plus the plain kNN and raw-backbone rows:
#    luma: luma/queries.jsonl (held-out text and photos), shopper/ (held-out), negative/;
#    merged: merged/queries.jsonl (held-out).
# 3. bench/travel_table.py prints one table: methods x (Luma text, Luma photos, merged, shopper, negatives).
# Results: bench/results/travel-<set>-<variant>$SUFFIX.json and travel-<variant>$SUFFIX.txt (the table).
#
# LIMIT=N evaluates only the first N held-out queries of each set (a quick run; the table says so).
# PREPARE=0 reuses the data folders of an earlier run (no import, index or training); PREPARE=train
# reuses their imported, indexed catalogues but trains again (after a change to training or the heads).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
PY="${PYTHON:-.venv/bin/python}"
CATALOG="${DEMO_CATALOG:-../shared/datasets/magento-luma}"
EVAL_DIR="${EVAL_DIR:-.data/eval-travel/sets}"
DATA_ROOT="${DATA_ROOT:-.data/eval-travel}"
SEED="${SEED:-13}"
VARIANTS="${VARIANTS:-minimal}"
SHOPPER_VARIANTS="${SHOPPER_VARIANTS:-2}"
LIMIT="${LIMIT:-}"
PREPARE="${PREPARE:-1}"
RESULTS=bench/results
SUFFIX="${SUFFIX:-}"
mkdir -p "$RESULTS" "$EVAL_DIR"

echo "==> Evaluation sets (seed $SEED) -> $EVAL_DIR"
MMSEARCH_DATA_DIR="$DATA_ROOT/luma-${VARIANTS%% *}" $PY manage.py make_travel_eval \
  --catalog "$CATALOG" --out "$EVAL_DIR" --seed "$SEED" --variants "$SHOPPER_VARIANTS"

# queries.jsonl -> the held-out (or negative) lines, the first $LIMIT of each kind when LIMIT is set
select_queries() {
  local src="$1" dst="$2" split="$3"
  $PY - "$src" "$dst" "$split" "${LIMIT:-0}" <<'EOF'
import json, sys
from collections import Counter
src, dst, split, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
taken = Counter()
with open(src) as f, open(dst, "w") as out:
    for line in f:
        row = json.loads(line)
        if row.get("split") != split or (limit and taken[row["kind"]] >= limit):
            continue
        taken[row["kind"]] += 1
        out.write(line)
EOF
}

prepare() {  # catalogue folder, variant
  local folder="$1" variant="$2"
  if [ "$PREPARE" = "1" ]; then
    $PY manage.py migrate --noinput -v 0
    MMSEARCH_AUTO_INDEX=0 $PY manage.py import_catalog "$folder/catalog_$variant.jsonl"
    $PY manage.py mmsearch_reindex --sync --force
  fi
  $PY manage.py mmsearch_train --holdout "$folder/split.json" --labels "$folder/labels_train.jsonl"
  $PY manage.py mmsearch_reindex --sync --missing
}

evaluate() {  # query file, result name, [extra mmsearch_evaluate arguments]
  local queries="$1" name="$2"
  shift 2
  $PY manage.py mmsearch_evaluate "$queries" --backbone "$@" --json "$RESULTS/travel-$name$SUFFIX.json" \
    | tee "$RESULTS/travel-$name$SUFFIX.log"
}

# the storefront's threshold (RELEVANCE["STOREFRONT_MIN"] = "auto") on the same queries, default methods only
evaluate_cut() {  # query file, result name
  evaluate "$1" "$2-cut" --min-relevance auto --method rerank --method feature
}

for variant in $VARIANTS; do
  for set in luma merged; do
    export MMSEARCH_DATA_DIR="$DATA_ROOT/$set-$variant"
    echo
    echo "==> [$set $variant] data folder $MMSEARCH_DATA_DIR"
    [ "$PREPARE" != "0" ] && prepare "$EVAL_DIR/$set" "$variant"
    if [ "$set" = luma ]; then
      select_queries "$EVAL_DIR/luma/queries.jsonl" "$EVAL_DIR/luma/heldout$SUFFIX.jsonl" heldout
      select_queries "$EVAL_DIR/shopper/queries.jsonl" "$EVAL_DIR/shopper/heldout$SUFFIX.jsonl" heldout
      select_queries "$EVAL_DIR/negative/queries.jsonl" "$EVAL_DIR/negative/all$SUFFIX.jsonl" negative
      evaluate "$EVAL_DIR/luma/heldout$SUFFIX.jsonl" "luma-$variant"
      evaluate "$EVAL_DIR/shopper/heldout$SUFFIX.jsonl" "shopper-$variant"
      evaluate "$EVAL_DIR/negative/all$SUFFIX.jsonl" "negative-$variant"
      evaluate_cut "$EVAL_DIR/luma/heldout$SUFFIX.jsonl" "luma-$variant"
      evaluate_cut "$EVAL_DIR/shopper/heldout$SUFFIX.jsonl" "shopper-$variant"
      evaluate_cut "$EVAL_DIR/negative/all$SUFFIX.jsonl" "negative-$variant"
    else
      select_queries "$EVAL_DIR/merged/queries.jsonl" "$EVAL_DIR/merged/heldout$SUFFIX.jsonl" heldout
      evaluate "$EVAL_DIR/merged/heldout$SUFFIX.jsonl" "merged-$variant"
      evaluate_cut "$EVAL_DIR/merged/heldout$SUFFIX.jsonl" "merged-$variant"
    fi
  done
  unset MMSEARCH_DATA_DIR
  echo
  $PY bench/travel_table.py --variant "$variant" --results "$RESULTS" --suffix="$SUFFIX" ${LIMIT:+--limit "$LIMIT"} \
    --queries "$EVAL_DIR/shopper/heldout$SUFFIX.jsonl" | tee "$RESULTS/travel-$variant$SUFFIX.txt"
  echo | tee -a "$RESULTS/travel-$variant$SUFFIX.txt"
  r="$RESULTS/travel"
  $PY bench/threshold_table.py \
    --set luma "$EVAL_DIR/luma/heldout$SUFFIX.jsonl" "$r-luma-$variant$SUFFIX.json" "$r-luma-$variant-cut$SUFFIX.json" \
    --set shopper "$EVAL_DIR/shopper/heldout$SUFFIX.jsonl" "$r-shopper-$variant$SUFFIX.json" "$r-shopper-$variant-cut$SUFFIX.json" \
    --set merged "$EVAL_DIR/merged/heldout$SUFFIX.jsonl" "$r-merged-$variant$SUFFIX.json" "$r-merged-$variant-cut$SUFFIX.json" \
    --negatives "$r-negative-$variant-cut$SUFFIX.json" | tee -a "$RESULTS/travel-$variant$SUFFIX.txt"
done
echo
echo "==> Done: $RESULTS/travel-{$(echo $VARIANTS | tr ' ' ',')}$SUFFIX.txt"
