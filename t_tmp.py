import os, time, json
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
import django; django.setup()
from multimodal_search import searching, services
from multimodal_search.backends import pgvector as be
from django.db import connection
qs=[json.loads(l)['query'] for l in open('.data/eval/luma/queries.jsonl') if '"kind": "text"' in l][:100]
services.search_products(qs[0])
enc=searching.get_encoder()
T={}
def tm(name, f):
    t=time.perf_counter(); r=f(); T[name]=T.get(name,0)+(time.perf_counter()-t)*1000/len(qs); return r
for q in qs:
    query=tm("encode", lambda: searching.encode_query(q, None))
    names={"text","title","image","lexical","neighbours","colour","gender","category","material"}
    pool,sig=tm("collect", lambda: searching.collect_signals(query, names, enc.model_id, 100, []))
    tm("search_total", lambda: services.search_products(q, k=15))
    tm("plain", lambda: be.nearest_products("text_vector", query.text_vector, model_id=enc.model_id, limit=15))
    tm("fetch", lambda: list(searching.get_adapter().get_queryset().filter(pk__in=pool[:15])))
print({k: round(v,1) for k,v in T.items()}, len(pool))
