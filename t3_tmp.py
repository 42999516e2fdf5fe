import os, time, json
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
import django; django.setup()
from multimodal_search import searching, services
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
qs=[json.loads(l)['query'] for l in open('.data/eval/luma/queries.jsonl') if '"kind": "text"' in l][:60]
services.search_products(qs[0])
enc=searching.get_encoder()
names={"text","title","image","lexical","neighbours","colour","gender","category","material"}
sqls=[]
for q in qs:
    query=searching.encode_query(q, None)
    with CaptureQueriesContext(connection) as c:
        searching.collect_signals(query, names, enc.model_id, 100, [])
    sqls.append([x['sql'] for x in c.captured_queries if 'WITH pool' in x['sql']][0])
for setting in ("on","off","on","off"):
    t=time.perf_counter()
    for sql in sqls:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL hnsw.ef_search = 100"); cur.execute(f"SET LOCAL enable_seqscan = {setting}")
            cur.execute(sql); cur.fetchall()
    print(setting, (time.perf_counter()-t)*1000/len(sqls))
