"""The names ranking speaks in: search methods, signals, and the stored product fields signals read.

Signals (one value per candidate product, higher is better):

========== =====================================================================================
``text``    cosine of the query's text vector and the product's text (title, description, ...)
``title``   cosine of the query's text vector and the product's short title line
``image``   cosine of the query's text (or photo, in the shared space) and the product's pooled photos
``visual``  best cosine of the query photo's visual features and any of the product's photos
``fused``   cosine of the query and the product's fused (text + photo) vector: embedding-level fusion
``lexical`` PostgreSQL full-text rank of the query words in the product's text
``neighbours`` how much the product's photos look like the photos of the best word matches
``colour``  share of the product showing the colours the query names (or the query photo shows)
``gender``  how surely the product is for the gender the query names
``category`` how surely the product is in a learned category the query names
``material`` how surely the product is of the learned materials the query names
========== =====================================================================================

Stored product fields (``ProductEmbedding.fields``): what the adapter's ``get_fields`` returns, plus what
indexing and training add. Ranking reads the keys below; any other key is kept and ignored.
"""

from __future__ import annotations

# --- search methods -------------------------------------------------------------------------------
FEATURE = "feature"
EMBEDDING = "embedding"
DECISION = "decision"
RERANK = "rerank"
TEXT_ONLY = "text"
IMAGE_ONLY = "image"
LEXICAL_ONLY = "lexical"
METHODS = (FEATURE, EMBEDDING, DECISION, RERANK, TEXT_ONLY, IMAGE_ONLY, LEXICAL_ONLY)
#: methods that rank by the query's words alone
TEXT_ONLY_METHODS = (TEXT_ONLY, LEXICAL_ONLY)

# --- signals --------------------------------------------------------------------------------------
TEXT = "text"
TITLE = "title"
IMAGE = "image"
VISUAL = "visual"
FUSED = "fused"
LEXICAL = "lexical"
NEIGHBOURS = "neighbours"
COLOUR = "colour"
GENDER = "gender"
CATEGORY = "category"
MATERIAL = "material"
#: how surely a product is in a department the words name (``ranking.departments``; read only by the
#: ``broad`` relevance calibration, never by a ranking)
DEPARTMENT = "department"
#: the share of the qualities the words name that a product states (``ranking.qualities``; read only
#: by the ``broad`` relevance calibration, never by a ranking)
QUALITY = "quality"
#: 1 for a product whose stated colour or gender is not the one the words with a photo ask for ("like this
#: photo, but in blue" with a purple product's photo); such products rank after the others (never weighted)
ASKED_OTHERWISE = "asked_otherwise"
#: how surely a product is of a kind the typed words name (the category they name, without synonyms: "shorts",
#: not also the "pants" of its synonym "short pants"), for a text query that names a gender: of those products,
#: the ones surely for the other gender rank after the others, in their places (``search.gender_within_kind``;
#: never weighted)
KIND_ASKED = "kind_asked"
#: the product is of a kind of product the words ask for, by its title or its category leaf ("capri" in
#: "yoga capri": the catalogue's kinds are its titles' head nouns and its leaves' words; ``Query.title_kinds``),
#: 1 or 0: products of it rank before the others (``search.kind_first``; never weighted)
TITLE_KIND = "title_kind"
PERSONAL = "personal"  # the shopper's profile (services.search: personal re-ranking)
#: the shop's most interacted-with products, and the newest that fill their list (services.recommend)
POPULAR, NEWEST = "popular", "newest"
#: a product whose identifier or group (its sku, its parent sku) the words are (``services.search``)
CODE = "code"
#: signals the neighbour signal's leaders are chosen by (reciprocal rank fusion of their ranks)
NEIGHBOUR_LEADER_SIGNALS = (TEXT, TITLE, LEXICAL)
NEIGHBOUR_LEADERS = 5

# --- stored fields: given by the adapter's get_fields ----------------------------------------------
FIELD_TITLE = "title"  # the product's name
FIELD_COLOR = "color"  # stated colour ("Navy", "Red/White")
FIELD_GENDER = "gender"  # stated gender ("Men", "Women", "Unisex")
FIELD_MATERIAL = "material"  # stated materials ("Organic Cotton, Polyester")
FIELD_GROUP = "group"  # the parent (e.g. parent sku) colour variants share; hold-out splits keep groups whole
FIELD_SKU = "sku"  # the product's own code as shoppers see it (a search of one code finds it)
#: other stated qualities, name -> a value, a list of values or true ({"pattern": "Striped", "sale": true})
FIELD_ATTRIBUTES = "attributes"
ADAPTER_FIELDS = (FIELD_TITLE, FIELD_COLOR, FIELD_GENDER, FIELD_MATERIAL, FIELD_GROUP, FIELD_SKU, FIELD_ATTRIBUTES)

# --- stored fields: added by indexing and mmsearch_train ------------------------------------------
FIELD_COLOURS = "colours"  # colour name -> share of the product's pixels (plus the stated colour)
FIELD_CATEGORY_LEAF = "category_leaf"  # leaf of the deepest category path, lower case
FIELD_COLOUR_INFERRED = "colour_inferred"  # colour name -> probability (photo classifier)
FIELD_GENDER_INFERRED = "gender_inferred"  # gender -> probability (photo classifier)
FIELD_CATEGORY_INFERRED = "category_inferred"  # leaf -> probability (product classifier)
FIELD_MATERIAL_INFERRED = "material_inferred"  # material -> probability (product classifier)
INFERRED_FIELDS = (
    FIELD_GENDER_INFERRED,
    FIELD_COLOUR_INFERRED,
    FIELD_CATEGORY_INFERRED,
    FIELD_MATERIAL_INFERRED,
    FIELD_CATEGORY_LEAF,
)

#: the fields the category signal reads, and the department signal (a department is a set of leaves)
_CATEGORY_FIELDS = (FIELD_CATEGORY_LEAF, FIELD_CATEGORY_INFERRED)
#: the stored fields each field-reading signal needs
SIGNAL_FIELDS: dict[str, tuple[str, ...]] = {
    COLOUR: (FIELD_COLOURS, FIELD_COLOR, FIELD_COLOUR_INFERRED),
    GENDER: (FIELD_GENDER, FIELD_GENDER_INFERRED),
    CATEGORY: _CATEGORY_FIELDS,
    # the title too: a material it names counts as stated (attributes.facet_match)
    MATERIAL: (FIELD_TITLE, FIELD_MATERIAL, FIELD_MATERIAL_INFERRED),
    DEPARTMENT: _CATEGORY_FIELDS,
    QUALITY: (FIELD_TITLE, FIELD_MATERIAL, FIELD_ATTRIBUTES),
    TITLE_KIND: (FIELD_TITLE, FIELD_CATEGORY_LEAF, FIELD_CATEGORY_INFERRED),
}


def fields_for(signals: set[str]) -> list[str]:
    """The stored field keys the given signals read, sorted."""
    return sorted({key for name in SIGNAL_FIELDS.keys() & signals for key in SIGNAL_FIELDS[name]})
