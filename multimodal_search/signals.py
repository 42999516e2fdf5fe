"""Outbound signals other apps can hook into."""

from django.dispatch import Signal

# sent with product_pks (list[str]) and model_id (str) after vectors are stored
product_indexed = Signal()
# sent with query (dict), result_count (int), took_ms (float), shown (list[str]: the pks of the results
# returned, in order), first_position (int: the 1-based rank of the first of them) and filters (dict:
# the refinements set) and match (str | None: "exact", "related" or "none", the answer's match summary);
# receivers.log_search writes the search log from it
search_performed = Signal()
