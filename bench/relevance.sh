#!/usr/bin/env bash
# Relevance evaluation on the Luma catalogue, end to end, from a checkout.
#
#   bash bench/relevance.sh            # both variants: minimal (title + description) and full
#   VARIANTS=full bash bench/relevance.sh
#
# 1. make_luma_eval writes the judged set (split, two catalogues, queries) to $EVAL_DIR.
# 2. Per variant, in its own data folder (.data/eval/<variant>: its own embedded PostgreSQL
#    and media, so the demo database is untouched): migrate, import the catalogue, index
#    in-process, train on the train split (when the project has mmsearch_train), evaluate
#    the held-out queries with every method.
# Results: bench/results/relevance-<variant>.json and .txt (the printed table).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# a throwaway database per run: the development settings (DEBUG on, a development key) are fine here
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
PY="${PYTHON:-.venv/bin/python}"
CATALOG="${DEMO_CATALOG:-../shared/datasets/magento-luma}"
EVAL_DIR="${EVAL_DIR:-.data/eval/luma}"
DATA_ROOT="${DATA_ROOT:-.data/eval}"  # per-variant data folders: $DATA_ROOT/<variant>
SEED="${SEED:-13}"
VARIANTS="${VARIANTS:-minimal full}"
# LABELS=1 (default): mmsearch_train also reads labels_train.jsonl, the colour/gender/category
# of the *train* items (what a shop knows about its older products); the indexed text of
# every item stays as the variant says. LABELS=0 trains on the indexed catalogue alone.
LABELS="${LABELS:-1}"
# --force re-encodes every product, so the numbers always come from the current code
# (a content hash does not see changes in how vectors are made). FORCE=0 skips that.
REINDEX_FLAGS="--sync"
[ "${FORCE:-1}" = "1" ] && REINDEX_FLAGS="--sync --force"
RESULTS=bench/results
SUFFIX="${SUFFIX:-}"  # e.g. SUFFIX=-nolabels keeps runs apart
mkdir -p "$RESULTS" "$EVAL_DIR"

echo "==> Judged query set (seed $SEED) -> $EVAL_DIR"
MMSEARCH_DATA_DIR="$DATA_ROOT/${VARIANTS%% *}" $PY manage.py make_luma_eval \
  --catalog "$CATALOG" --out "$EVAL_DIR" --seed "$SEED"

for variant in $VARIANTS; do
  export MMSEARCH_DATA_DIR="$DATA_ROOT/$variant"
  echo
  echo "==> [$variant] data folder $MMSEARCH_DATA_DIR"
  $PY manage.py migrate --noinput -v 0
  MMSEARCH_AUTO_INDEX=0 $PY manage.py import_catalog "$EVAL_DIR/catalog_$variant.jsonl"

  $PY manage.py mmsearch_reindex $REINDEX_FLAGS

  # Training reads indexed vectors, so it runs after indexing; a second (incremental)
  # reindex then picks up anything training changed (e.g. a new encoder model_id).
  if $PY manage.py help mmsearch_train >/dev/null 2>&1; then
    TRAIN_HELP="$($PY manage.py help mmsearch_train 2>/dev/null)"
    if grep -q -- "--holdout" <<<"$TRAIN_HELP"; then HOLDOUT_FLAG=--holdout
    elif grep -q -- "--exclude-skus-from" <<<"$TRAIN_HELP"; then HOLDOUT_FLAG=--exclude-skus-from
    else HOLDOUT_FLAG=""
    fi
    if [ -n "$HOLDOUT_FLAG" ]; then
      echo "==> [$variant] training on train parents only ($HOLDOUT_FLAG $EVAL_DIR/split.json)"
      LABEL_ARGS=()
      [ "$LABELS" = "1" ] && LABEL_ARGS=(--labels "$EVAL_DIR/labels_train.jsonl")
      $PY manage.py mmsearch_train "$HOLDOUT_FLAG" "$EVAL_DIR/split.json" "${LABEL_ARGS[@]}"
      $PY manage.py mmsearch_reindex --sync --missing
    else
      echo "WARNING: mmsearch_train cannot hold products out; not training (held-out items would leak)" >&2
    fi
  else
    echo "TODO: no mmsearch_train command yet; evaluating without trained models"
  fi

  $PY manage.py mmsearch_evaluate "$EVAL_DIR/queries.jsonl" --split heldout \
    --json "$RESULTS/relevance-$variant$SUFFIX.json" | tee "$RESULTS/relevance-$variant$SUFFIX.txt"
  echo "nDCG@10 per query template ($variant):" | tee -a "$RESULTS/relevance-$variant$SUFFIX.txt"
  $PY bench/relevance_breakdown.py "$RESULTS/relevance-$variant$SUFFIX.json" --method rerank --method feature \
    --method decision --method lexical --method text | tee -a "$RESULTS/relevance-$variant$SUFFIX.txt"
done
unset MMSEARCH_DATA_DIR

# No embedded PostgreSQL is left running: each manage.py command above starts its data folder's
# server on its first connection and stops it when it exits (shop.runtime; a warm start takes
# about 0.1 s). One that was already running (`python -m shop.runtime start`, MMSEARCH_KEEP_DB=1)
# is reused and left alone: `python -m shop.runtime stop --data-dir .data/eval/<variant>` stops it.
echo
echo "==> Done: $RESULTS/relevance-{$(echo $VARIANTS | tr ' ' ',')}.{json,txt}"
