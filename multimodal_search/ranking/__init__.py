"""Ranking: how signals are named, computed from text and photos, and fused (pure where possible, no ORM)."""
