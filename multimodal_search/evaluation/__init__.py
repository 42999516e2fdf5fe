"""Relevance evaluation: judged queries in, nDCG / recall / MRR / latency per method out.

* ``queries``: the judged query file format (read by ``load_queries``);
* ``metrics``: nDCG, recall, MRR and the fair order of tied results (pure);
* ``runner``: every query through every method (``run_evaluation``);
* ``report``: the table ``mmsearch_evaluate`` prints (``format_table``).
"""
