"""API permissions: who may see and change the search index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission

from multimodal_search.models import REINDEX_PERMISSION

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class CanReindex(BasePermission):
    """Users holding ``multimodal_search.reindex_products`` (superusers hold every permission)."""

    message = "You need the permission to reindex and retrain the search index."

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(REINDEX_PERMISSION))
