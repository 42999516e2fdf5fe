"""Relevance evaluation data for the demo store (judged queries over the Luma catalogue)."""
