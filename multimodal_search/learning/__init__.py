"""Everything ``mmsearch_train`` does, and nothing a search request runs."""
