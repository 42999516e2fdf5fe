#!/usr/bin/env bash
# Relevance evaluation on the Luma catalogue, end to end, from a checkout.
#
#   bash bench/relevance.sh            # both variants: minimal (title + description) and full
#   VARIANTS=full bash bench/relevance.sh
#
# 1. make_luma_eval writes the judged set (split, two catalogues, queries) to $EVAL_DIR.
# 2. Per variant, in its own data folder (.data/eval/<variant>: its own embedded PostgreSQL
#    and media, so the demo database is untouched): migrate, import the catalogue,
#    train (when the project has mmsearch_train), index in-process, evaluate the
#    held-out queries with every method.
# Results: bench/results/relevance-<variant>.json and .txt (the printed table).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-.venv/bin/python}"
CATALOG="${DEMO_CATALOG:-../shared/datasets/magento-luma}"
EVAL_DIR="${EVAL_DIR:-.data/eval/luma}"
SEED="${SEED:-13}"
VARIANTS="${VARIANTS:-minimal full}"
RESULTS=bench/results
mkdir -p "$RESULTS" "$EVAL_DIR"

echo "==> Judged query set (seed $SEED) -> $EVAL_DIR"
MMSEARCH_DATA_DIR=".data/eval/${VARIANTS%% *}" $PY manage.py make_luma_eval \
  --catalog "$CATALOG" --out "$EVAL_DIR" --seed "$SEED"

for variant in $VARIANTS; do
  export MMSEARCH_DATA_DIR=".data/eval/$variant"
  echo
  echo "==> [$variant] data folder $MMSEARCH_DATA_DIR"
  $PY manage.py migrate --noinput -v 0
  MMSEARCH_AUTO_INDEX=0 $PY manage.py import_catalog "$EVAL_DIR/catalog_$variant.jsonl"

  if $PY manage.py help mmsearch_train >/dev/null 2>&1; then
    if $PY manage.py help mmsearch_train | grep -q -- "--exclude-skus-from"; then
      echo "==> [$variant] training on train parents only (held-out SKUs excluded)"
      $PY manage.py mmsearch_train --exclude-skus-from "$EVAL_DIR/split.json"
    else
      echo "WARNING: mmsearch_train has no --exclude-skus-from; not training (held-out items would leak)" >&2
    fi
  else
    echo "TODO: no mmsearch_train command yet; evaluating without trained heads"
  fi

  $PY manage.py mmsearch_reindex --sync
  $PY manage.py mmsearch_evaluate "$EVAL_DIR/queries.jsonl" --split heldout \
    --json "$RESULTS/relevance-$variant.json" | tee "$RESULTS/relevance-$variant.txt"
done
unset MMSEARCH_DATA_DIR

# The embedded PostgreSQL servers keep running (shop.runtime starts them with
# cleanup_mode=None); they stop with the machine or via pg_ctl in each data folder.
echo
echo "==> Done: $RESULTS/relevance-{$(echo $VARIANTS | tr ' ' ',')}.{json,txt}"
