"""A query as ranking sees it: the shopper's words and photo, encoded, and what they name."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Query:
    """An encoded query.

    Attributes:
        text: the words as searched (synonyms added), or None for a photo-only query.
        text_vector: ``text`` in the shared space.
        image_shared: the query photo in the shared (text-comparable) space.
        image_features: the query photo's visual features (photo-to-photo).
        colours: colour names the words ask for ("like this photo, but in red").
        photo_colours: the query photo's colour distribution (``ranking.colour.NAMES`` order).
        photo_classes: the query photo's class probabilities (the encoder's classifier; None: it has none).
        gender: the gender the words ask for.
        facets: learned facet -> the values the words name ({"category": ["hoodies & sweatshirts"]}).
        typed: the shopper's words as typed, without synonyms or expansions (None: as ``text``).
        departments: the catalogue's departments the words name, each with its leaves
            ({"tops": ["jackets", "tees"]}; ``ranking.departments``).
        qualities: the stems of the catalogue's qualities the words name (["wool"]; ``ranking.qualities``),
            only in a broad query.
        broad: the typed words name only colours, genders, departments and qualities ("red", "tops",
            "wool"; ``ranking.intent.facets_only``): their relevance is the ``broad`` calibration's.
        kinds: the categories the typed words name, without synonyms (["shorts"] for "women's shorts",
            whose synonyms add "short pants": ``facets`` then also has "pants").
        title_kinds: the stems of the catalogue's kinds of product the words and their synonyms name
            (["capri"] for "yoga capri": ``ranking.departments.Departments.kinds``), what the
            ``title_kind`` signal looks for in each title.
    """

    text: str | None
    text_vector: np.ndarray | None
    image_shared: np.ndarray | None
    image_features: np.ndarray | None
    colours: list[str] = field(default_factory=list)
    photo_colours: np.ndarray | None = None
    photo_classes: np.ndarray | None = None
    gender: str | None = None
    facets: dict[str, list[str]] = field(default_factory=dict)
    typed: str | None = None
    departments: dict[str, list[str]] = field(default_factory=dict)
    qualities: list[str] = field(default_factory=list)
    broad: bool = False
    kinds: list[str] = field(default_factory=list)
    title_kinds: list[str] = field(default_factory=list)

    @property
    def tie_seed(self) -> str:
        """What ties between equal scores are broken by (``ranking.fusion.tie_key``): the words and the photo."""
        photo = "" if self.image_features is None else self.image_features[:4].tobytes().hex()
        return f"{self.text or ''}|{photo}"
