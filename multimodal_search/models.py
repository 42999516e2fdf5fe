"""Vectors of indexed products, kept apart from the product model; the search log and shopper events.

Vector columns are ``halfvec`` without a fixed dimension so that several
encoders (of different sizes) can live side by side during a re-index; the
HNSW (cosine) indexes are partial expression indexes per encoder
(``(fused_vector::halfvec(D)) WHERE model_id = '...'``), the layout pgvector's
README recommends for mixed dimensions. They are created by
``backends.pgvector.ensure_indexes`` the first time an encoder stores vectors.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Length, Lower
from pgvector.django import HalfVectorField

# who may re-index, retrain and read the index status (admin actions, staff pages, /api/index/status/)
REINDEX_PERMISSION = "multimodal_search.reindex_products"


class ProductEmbedding(models.Model):
    """Text, pooled-image and fused vectors of one product for one encoder."""

    product_pk = models.CharField(max_length=64)
    model_id = models.CharField(max_length=200)
    content_hash = models.CharField(max_length=64)
    text_vector = HalfVectorField()
    title_vector = HalfVectorField(null=True, blank=True)
    image_vector = HalfVectorField(null=True, blank=True)
    fused_vector = HalfVectorField()
    #: text + title + photos-in-text-space, each of unit length (``store.base.pool_vector``): its inner
    #: product with a words query is the sum of those three cosines, so one index finds a words search's candidates
    pool_vector = HalfVectorField(null=True, blank=True)
    image_count = models.PositiveIntegerField(default=0)
    categories = ArrayField(models.CharField(max_length=1000), default=list, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    search_text = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product_pk", "model_id"], name="mmsearch_product_model_uniq")]
        indexes = [
            models.Index(fields=["model_id"], name="mmsearch_pe_model_idx"),
            GinIndex(fields=["categories"], name="mmsearch_pe_categories_gin"),
            # the admin's vector rows, in product order (``admin.ProductEmbeddingAdmin.get_ordering``): a
            # page is then read from this index, not sorted from the whole table (0.3 s at 100,000 products)
            models.Index(Length("product_pk"), F("product_pk"), F("model_id"), name="mmsearch_pe_admin_order_idx"),
            # a search that is one product code ("MH07-Gray", "mh07": ``store.sql.products_by_code``)
            models.Index(
                F("model_id"), OpClass(Lower("product_pk"), name="text_pattern_ops"), name="mmsearch_pe_code_idx"
            ),
            models.Index(
                F("model_id"), OpClass(Lower(KT("fields__sku")), name="text_pattern_ops"), name="mmsearch_pe_sku_idx"
            ),
            models.Index(F("model_id"), Lower(KT("fields__group")), name="mmsearch_pe_group_idx"),
        ]
        permissions = [("reindex_products", "Can reindex and retrain the search index")]

    def __str__(self) -> str:
        return f"{self.product_pk} [{self.model_id}]"


class InferredFacets(models.Model):
    """The facets ``mmsearch_train``'s attribute classifiers inferred for one product row
    (``ProductEmbedding``, same ``product_pk`` and ``model_id``) where its own fields state none.

    Kept in a narrow table of their own: a retrain rewrites every product's facets, and a write of the
    product's wide row (its vectors are stored in line) adds an entry to each of its HNSW indexes (about
    100 rows a second at 100,000 products, hours at 1,000,000), where one of these rows costs little.
    Reads merge them over the row's fields (``store.pgvector``); a key whose value is null hides the
    same key of fields stored before migration 0020, which kept them in the row. Deleted with their
    product row, by a trigger (migration 0020).
    """

    product_pk = models.CharField(max_length=64)
    model_id = models.CharField(max_length=200)
    inferred = models.JSONField(default=dict)

    class Meta:
        verbose_name_plural = "inferred facets"
        constraints = [models.UniqueConstraint(fields=["product_pk", "model_id"], name="mmsearch_facets_uniq")]

    def __str__(self) -> str:
        return f"{self.product_pk} [{self.model_id}]"


class ImageEmbedding(models.Model):
    """One photo of a product: visual features (photo-to-photo) and shared-space vector."""

    product_pk = models.CharField(max_length=64)
    model_id = models.CharField(max_length=200)
    image_key = models.CharField(max_length=500)
    position = models.PositiveIntegerField(default=0)
    feature_vector = HalfVectorField()
    shared_vector = HalfVectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product_pk", "model_id", "image_key"], name="mmsearch_image_uniq")
        ]
        indexes = [models.Index(fields=["model_id", "product_pk"], name="mmsearch_ie_model_pk_idx")]

    def __str__(self) -> str:
        return f"{self.product_pk}:{self.image_key} [{self.model_id}]"


class IndexState(models.Model):
    """Whether a product's stored vectors are for its current content: the indexing outbox.

    Written in the same transaction as the product change (``services.outbox.mark_dirty``), so a
    change is never lost even when the broker is down; the worker clears ``dirty`` only when
    ``version`` is still the one it read at the start, and the sweep enqueues what is left.
    """

    product_pk = models.CharField(max_length=64, unique=True)
    dirty = models.BooleanField(default=True)
    # bumped at every change: a worker writes only when the version it started with is current
    version = models.PositiveBigIntegerField(default=1)
    # task starts since the last success or change (a worker that dies mid-batch still counts)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # set after ``DURABILITY["MAX_ATTEMPTS"]`` tries: skipped by batches, retried by the sweep when due
    failed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # last change, claim or sweep enqueue: the sweep re-sends a dirty product only once this is old
    touched_at = models.DateTimeField()
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["touched_at"], name="mmsearch_state_dirty_idx", condition=models.Q(dirty=True)),
        ]

    def __str__(self) -> str:
        state = "failed" if self.failed_at else "dirty" if self.dirty else "clean"
        return f"{self.product_pk} v{self.version} {state}"


class DriftCheck(models.Model):
    """What the last walk of the catalogue against the index found (``services.drift.find_drift``): the
    index health page shows it when the catalogue is too large to walk for every page view."""

    model_id = models.CharField(max_length=200, unique=True)  # the last walk per encoder version
    checked_at = models.DateTimeField()
    seconds = models.FloatField()
    products = models.PositiveIntegerField()
    never_indexed = models.PositiveIntegerField()
    old_version = models.PositiveIntegerField()
    stale = models.PositiveIntegerField()
    orphans = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.model_id} at {self.checked_at:%Y-%m-%d %H:%M}: {self.products} products"


class DriftWalk(models.Model):
    """A deep sweep's walk of the catalogue while it is under way (``services.sweeps``): a worker
    walks for ``DURABILITY["STEP_SECONDS"]`` at a time, then sends the next step, so that a catalogue of
    millions of products never outlasts a task's time limit nor holds the indexing queue. The row is
    deleted when the walk ends, and its findings become the :class:`DriftCheck`."""

    PRODUCTS, ORPHANS = "products", "orphans"

    model_id = models.CharField(max_length=200, unique=True)  # one walk per encoder version
    #: the searchable products in pk order, then the stored vectors in the store's order (for orphans)
    phase = models.CharField(max_length=8, default=PRODUCTS)
    after = models.CharField(max_length=255, null=True, blank=True)  # the last pk done in this phase
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    #: a step holds the walk until then (a killed step's hold runs out and the walk is taken up again)
    held_until = models.DateTimeField(null=True, blank=True)
    #: the task id of the step holding it: that step's message, redelivered after its worker died, takes it
    held_by = models.CharField(max_length=255, blank=True, default="")
    seconds = models.FloatField(default=0.0)  # spent walking, steps together
    products = models.PositiveIntegerField(default=0)
    never_indexed = models.PositiveIntegerField(default=0)
    old_version = models.PositiveIntegerField(default=0)
    stale = models.PositiveIntegerField(default=0)
    orphans = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.model_id}: {self.phase} after {self.after or '-'} ({self.products} products)"


class BackboneVector(models.Model):
    """What an encoder's backbone computed for one input, kept across head versions (``model_id``).

    A photo is keyed by the sha1 of its file, a text by the sha256 of its words; ``backbone_id`` is the
    encoder's ``image_backbone_id`` / ``text_backbone_id`` (weights, preprocessing, views), never the
    ``model_id``, so retraining a head re-runs only the heads. ``vector`` holds float16 bytes
    (``store.base.BaseVectorStore.backbone_vectors``).
    """

    backbone_id = models.CharField(max_length=200)
    digest = models.CharField(max_length=64)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["backbone_id", "digest"], name="mmsearch_backbone_uniq")]

    def __str__(self) -> str:
        return f"{self.digest[:12]} [{self.backbone_id}]"


class SearchLog(models.Model):
    """One search a shopper ran (storefront or API), compact: what was asked and what was shown.

    Written by ``receivers.log_search`` when a face opened a ``services.analytics.searcher`` context;
    deleted after ``ANALYTICS["RETENTION_DAYS"]`` (``mmsearch_prune_analytics``, the beat task). The
    visitor is a keyed hash of the session key (never the key: it would let a reader of this table
    take over the session) or the signed-in user; nothing else about the person is kept.
    """

    KINDS = [("text", "Text"), ("photo", "Photo"), ("both", "Text and photo"), ("voice", "Voice")]

    created_at = models.DateTimeField(db_index=True)
    query = models.CharField(max_length=500, blank=True)
    # the words searched when a typed word was read as the catalogue's nearest one (ranking.spelling)
    corrected = models.CharField(max_length=500, blank=True, default="")
    # "every_word" when no result passed the relevance cut and the page showed the products having every
    # word searched (services.search.EVERY_WORD); "" otherwise. A database default too: processes of the
    # code before it, still serving while it is migrated, go on logging
    fallback = models.CharField(max_length=16, blank=True, default="", db_default="")
    # the answer's ``match`` (``ranking.calibration.match_summary``): "exact", "related" or "none" (no result
    # a likely match: the API without ``min_relevance`` answers every product ranked); "" when unknown
    match = models.CharField(max_length=8, blank=True, default="", db_default="")
    # the words that named a kind of goods the shop has no word for ("dress" of "red dress";
    # ``query["unsold"]``, space-separated); "" otherwise
    unsold = models.CharField(max_length=200, blank=True, default="", db_default="")
    kind = models.CharField(max_length=8, choices=KINDS)
    source = models.CharField(max_length=16, default="storefront")
    # category, facet filters, price range, sort and page: only the ones set
    filters = models.JSONField(default=dict, blank=True)
    result_count = models.PositiveIntegerField()
    latency_ms = models.FloatField()
    # the product pks shown, in order, and the position (1-based) of the first of them
    results = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    first_position = models.PositiveIntegerField(default=1)
    session = models.CharField(max_length=64, blank=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "search log entry"
        verbose_name_plural = "search log"
        # the analytics' corrected, loosely answered and unsold queries read only these rows (a few of the log)
        indexes = [
            models.Index(fields=["created_at"], name="mmsearch_log_corrected", condition=~Q(corrected="")),
            models.Index(fields=["created_at"], name="mmsearch_log_fallback", condition=~Q(fallback="")),
            models.Index(fields=["created_at"], name="mmsearch_log_unsold", condition=~Q(unsold="")),
        ]

    def __str__(self) -> str:
        return f"{self.query or '(' + self.kind + ')'} · {self.result_count} results"


class ShopperEvent(models.Model):
    """Something a shopper did with a product: viewed, clicked in results, added to cart, bought.

    The one event store of query analytics (clicks and add-to-cart against the search that led to
    them: ``search`` and ``position``) and, later, of personalisation (views and purchases too).
    """

    VIEW, CLICK, CART, PURCHASE = "view", "click", "cart", "purchase"
    KINDS = [(VIEW, "Viewed"), (CLICK, "Clicked in results"), (CART, "Added to cart"), (PURCHASE, "Bought")]

    kind = models.CharField(max_length=10, choices=KINDS)
    product_pk = models.CharField(max_length=64)
    search = models.ForeignKey(SearchLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    # the result's 1-based position in the search's ranking (None: not from a search)
    position = models.PositiveIntegerField(null=True, blank=True)
    session = models.CharField(max_length=64, blank=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["product_pk", "kind"], name="mmsearch_event_product_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.product_pk}"


class ShopperProfile(models.Model):
    """A shopper's taste: the time-decayed weighted sum of the fused vectors of what they did (``ranking.personal``).

    ``shopper`` is ``"user:<id>"`` or ``"session:<visitor hash>"``. ``total`` (unnormalised) and ``weight``
    are decayed to ``as_of``; events with an id above ``last_event_id`` are not folded in yet. One row per
    shopper, written by the worker (``services.personal.update_profile``), never by a request.
    """

    shopper = models.CharField(max_length=80, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    model_id = models.CharField(max_length=200, blank=True)
    total = ArrayField(models.FloatField(), null=True, blank=True)
    weight = models.FloatField(default=0.0)
    as_of = models.DateTimeField(null=True, blank=True)
    last_event_id = models.BigIntegerField(default=0)
    events = models.PositiveIntegerField(default=0)
    # the latest PERSONALISATION["RECENT"] events, newest first: [kind, product_pk, ISO time]
    recent = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.shopper


class SynonymRule(models.Model):
    """Synonyms edited in the admin, added to the ``SYNONYMS`` setting's groups (``services.merchandising``).

    A *group* ("hoodie, hoody, hooded sweatshirt") expands a query naming any phrase with the others;
    a *one-way* rewrite ("sweater => hoodie, jumper") adds the right side to a query naming a phrase
    of the left side, never the other way round.
    """

    GROUP, ONEWAY = "group", "oneway"
    KINDS = [(GROUP, "Group (all equivalent)"), (ONEWAY, "One-way (left => right)")]

    kind = models.CharField(max_length=8, choices=KINDS, default=GROUP)
    terms = models.CharField(
        max_length=500, help_text='Group: "hoodie, hooded sweatshirt". One-way: "sweater => hoodie".'
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["terms"]

    def __str__(self) -> str:
        return self.terms

    def phrases(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(left, right) phrases of a one-way rewrite; (phrases, ()) of a group."""
        if self.kind == self.ONEWAY:
            left, _, right = self.terms.partition("=>")
            return _split_phrases(left), _split_phrases(right)
        return _split_phrases(self.terms), ()

    def clean(self) -> None:
        left, right = self.phrases()
        if self.kind == self.ONEWAY and ("=>" not in self.terms or not left or not right):
            raise ValidationError({"terms": 'A one-way rewrite reads "sweater => hoodie" (phrases on both sides).'})
        if self.kind == self.GROUP and ("=>" in self.terms or len(left) < 2):
            raise ValidationError({"terms": 'A group lists two or more phrases: "hoodie, hooded sweatshirt".'})


def _split_phrases(text: str) -> tuple[str, ...]:
    return tuple(phrase for phrase in (part.strip() for part in text.split(",")) if phrase)


class QueryRule(models.Model):
    """A merchandising rule for one query: pin, boost, bury or hide a product (``services.merchandising``).

    It fires when the query's words are the rule's (case, spaces and punctuation aside), or when the
    cosine between the two texts' vectors is at least ``similarity`` (1 turns meaning matches off).
    """

    PIN, BOOST, BURY, HIDE = "pin", "boost", "bury", "hide"
    ACTIONS = [
        (PIN, "Pin at a position"),
        (BOOST, "Boost (move up)"),
        (BURY, "Bury (move down)"),
        (HIDE, "Hide"),
    ]

    query = models.CharField(max_length=200)
    action = models.CharField(max_length=5, choices=ACTIONS, default=PIN)
    product_pk = models.CharField("product id", max_length=64, help_text="The product's primary key.")
    position = models.PositiveIntegerField(default=1, help_text="Pin: the 1-based position it is shown at.")
    places = models.PositiveIntegerField(
        default=10, help_text="Boost / bury: how many places it moves (0: to the top / the end of the results)."
    )
    similarity = models.FloatField(
        default=0.8,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Also fire for queries whose meaning is this close (cosine, 0-1; 1: only the same words).",
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["query", "position"]

    def __str__(self) -> str:
        return f"{self.query}: {self.action} {self.product_pk}"
