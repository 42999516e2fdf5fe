"""Outbound signals other apps can hook into."""

from django.dispatch import Signal

# sent with product_pks (list[str]) and model_id (str) after vectors are stored
product_indexed = Signal()
# sent with query (dict), result_count (int), took_ms (float)
search_performed = Signal()
