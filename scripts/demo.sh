#!/usr/bin/env bash
# Runs the demo store: migrate, import the catalogue, start a Celery worker,
# index everything (progress bar), then serve http://127.0.0.1:8000/ with gunicorn
# (shop/gunicorn_conf.py: DEBUG off, a random SECRET_KEY kept in $MMSEARCH_DATA_DIR/secret_key).
# The embedded PostgreSQL keeps running afterwards; `make stop-db` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=.venv/bin/python
CATALOG="${DEMO_CATALOG:-../shared/datasets/magento-luma}"
BROKER="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
ADDR="${DEMO_ADDR:-127.0.0.1:8000}"
mkdir -p .data
# Demo only: Django serves the catalogue photos although DEBUG is off (README "Production settings").
export DEMO_SERVE_MEDIA="${DEMO_SERVE_MEDIA:-1}"

echo "==> Secret key: $($PY -m shop.secret_key)"

echo "==> Broker: $BROKER"
$PY -c "from shop.runtime import ensure_redis; import sys; print('    ready at', ensure_redis(sys.argv[1]))" "$BROKER"

# The demo's PostgreSQL outlives it: started here with no owning process, and MMSEARCH_KEEP_DB=1
# keeps any restart by the demo's processes running too. `make stop-db` stops it.
export MMSEARCH_KEEP_DB=1
if [ -z "${DATABASE_URL:-}" ]; then
  echo "==> Database (embedded PostgreSQL)"
  $PY -m shop.runtime start
fi

echo "==> Database migrations"
$PY manage.py migrate --noinput

echo "==> Importing catalogue from $CATALOG"
MMSEARCH_AUTO_INDEX=0 $PY manage.py import_catalog "$CATALOG"

echo "==> Admin user admin / admin (demo only)"
$PY manage.py ensure_demo_admin
$PY manage.py ensure_demo_admin --shopper

echo "==> Static files"
$PY manage.py collectstatic --noinput --verbosity 0

echo "==> Starting Celery worker and the indexing sweep (beat) (log: .data/worker.log)"
.venv/bin/celery -A shop worker -Q embeddings,default --pool prefork --concurrency 1 --loglevel INFO \
  -B -s .data/celerybeat-schedule --without-gossip --without-mingle >.data/worker.log 2>&1 &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null || true' EXIT INT TERM

echo "==> Indexing through the worker"
$PY manage.py mmsearch_reindex --missing

echo "==> Training on the catalogue (photo->text head, re-ranker)"
$PY manage.py mmsearch_train
# picks up anything training left for the worker and, once every product has vectors for the new
# head, drops the older (zero-shot) version's vectors
$PY manage.py mmsearch_reindex --missing

# after indexing: the sample customers' profiles are folded from the vectors of the encoder that serves
echo "==> Shopper events of the sample customers (orders, wishlists, reviews)"
$PY manage.py import_luma_events "$CATALOG"
# profiles of an earlier run were built for the encoder version training just replaced: rebuilt on the worker
$PY manage.py mmsearch_rebuild_profiles

echo "==> Serving the store at http://$ADDR/  (admin: http://$ADDR/admin/ admin/admin; Ctrl-C stops)"
.venv/bin/gunicorn -c shop/gunicorn_conf.py --bind "$ADDR"
