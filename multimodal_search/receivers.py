"""Model signals -> indexing, sent once per committed transaction (``services.enqueue.index_on_commit``);
``search_performed`` -> the search log (``services.analytics``); merchandising rule changes -> a
reload of the rules (``services.merchandising``); a sign-in -> the session's shopper events become the
user's (``services.personal``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_save

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.models import QueryRule, SynonymRule
from multimodal_search.services import (
    VISITOR_SESSION_KEY,
    adopt_session_events,
    index_on_commit,
    log_search,
    rules_changed,
)
from multimodal_search.signals import search_performed


def product_changed(sender: type, instance: Any, raw: bool = False, using: str | None = None, **kwargs: Any) -> None:
    if raw:
        return
    index_on_commit([instance.pk], using=using)


def related_changed(sender: type, instance: Any, raw: bool = False, using: str | None = None, **kwargs: Any) -> None:
    if raw:
        return
    resolver = get_adapter().watched_models().get(sender)
    if resolver is not None:
        index_on_commit(resolver(instance), using=using)


def search_logged(sender: type, query: dict[str, Any], result_count: int, took_ms: float, **kwargs: Any) -> None:
    log_search(
        query,
        result_count,
        took_ms,
        shown=kwargs.get("shown"),
        first_position=kwargs.get("first_position", 1),
        filters=kwargs.get("filters"),
        match=kwargs.get("match"),
    )


def merchandising_changed(sender: type, **kwargs: Any) -> None:
    rules_changed()


def signed_in(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    """A visitor signed in: their session's events (and so its profile) become the user's."""
    session = getattr(request, "session", None)
    hashed = session.pop(VISITOR_SESSION_KEY, None) if session is not None else None
    if hashed:
        adopt_session_events(str(hashed), user.pk)


def connect() -> None:
    search_performed.connect(search_logged, dispatch_uid="mmsearch_search_log")
    user_logged_in.connect(signed_in, dispatch_uid="mmsearch_signed_in")
    for rule_model in (SynonymRule, QueryRule):
        name = rule_model._meta.model_name
        post_save.connect(merchandising_changed, sender=rule_model, dispatch_uid=f"mmsearch_rules_save_{name}")
        post_delete.connect(merchandising_changed, sender=rule_model, dispatch_uid=f"mmsearch_rules_delete_{name}")
    if not search_settings.ADAPTER or not search_settings.PRODUCT_MODEL:
        return
    adapter = get_adapter()
    model = adapter.get_model()
    post_save.connect(product_changed, sender=model, dispatch_uid="mmsearch_product_save")
    post_delete.connect(product_changed, sender=model, dispatch_uid="mmsearch_product_delete")
    for related in adapter.watched_models():
        post_save.connect(related_changed, sender=related, dispatch_uid=f"mmsearch_save_{related._meta.label}")
        post_delete.connect(related_changed, sender=related, dispatch_uid=f"mmsearch_delete_{related._meta.label}")
