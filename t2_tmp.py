import os, time, json
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
import django; django.setup()
from multimodal_search import searching, services
from django.db import connection
from django.test.utils import CaptureQueriesContext
q="womens organic cotton shorts"
services.search_products(q)
enc=searching.get_encoder()
query=searching.encode_query(q, None)
names={"text","title","image","lexical","neighbours","colour","gender","category","material"}
with CaptureQueriesContext(connection) as c:
    searching.collect_signals(query, names, enc.model_id, 100, [])
for x in c.captured_queries: print(x['time'], x['sql'][:80])
sql=[x['sql'] for x in c.captured_queries if 'WITH pool' in x['sql']][0]
with connection.cursor() as cur:
    cur.execute("SET hnsw.ef_search = 100")
    cur.execute("EXPLAIN (ANALYZE, TIMING) "+sql)
    for r in cur.fetchall(): print(r[0][:150])
