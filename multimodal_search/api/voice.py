"""``POST /api/v1/search/voice/``: a spoken search (a WAV recording), answered like the text search.

The recording is transcribed offline (``services.transcribe``); the words heard then go through the
text search's own path, so the answer is the search payload (results, facets, pages...) plus
``transcript``. A multipart POST: the ``photo`` throttle scope counts it, as each runs a model.
"""

from __future__ import annotations

from typing import Any

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from multimodal_search import services
from multimodal_search.api.errors import RequestTooLarge
from multimodal_search.api.schema import SearchResponseSerializer
from multimodal_search.api.serializers import SearchTextQuerySerializer
from multimodal_search.api.views import SearchView, _errors


class VoiceQuerySerializer(SearchTextQuerySerializer):
    """The text search's parameters, with a recording instead of ``q``."""

    q = None  # type: ignore[assignment]
    audio = serializers.FileField(
        help_text="The spoken search: a WAV file (PCM, any rate, mono or stereo; at most "
        '`VOICE["MAX_SECONDS"]` seconds, 15 by default).'
    )

    def validate_audio(self, value: UploadedFile) -> str:
        """The words heard in the recording (the upload itself is not kept)."""
        try:
            transcript = services.transcribe(value)
        except services.SearchError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_audio") from None
        if not transcript:
            raise serializers.ValidationError(
                "No words were heard in the recording; speak closer to the microphone or type instead.",
                code="no_speech",
            )
        return transcript

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs  # the words come from the recording: no "empty query" check here


class VoiceResponseSerializer(SearchResponseSerializer):
    transcript = serializers.CharField(help_text="The words heard in the recording (lower case), as searched.")


class VoiceSearchView(SearchView):
    """POST multipart ``audio`` (+ the text search's parameters but ``q``): search by voice."""

    parser_classes = [MultiPartParser]
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="search_by_voice",
        summary="Search by voice (a WAV recording)",
        description="The recording is transcribed on the server (pocketsphinx, offline), then searched as "
        "text; the answer is the text search's plus `transcript`. The other fields may also come in the "
        "query string. `next` and `previous` are null: send the form again with `page`.",
        request={"multipart/form-data": VoiceQuerySerializer},
        responses={200: VoiceResponseSerializer, **_errors(400, 405, 413, 415, 429)},
    )
    def post(self, request: Request) -> Response:
        try:  # refuse an oversized body from its header, before any of it is read
            services.check_recording_length(request.META.get("CONTENT_LENGTH"))
        except services.SearchError as exc:
            raise RequestTooLarge(str(exc)) from None
        data = self.form_data(request, VoiceQuerySerializer)
        serializer = VoiceQuerySerializer(data=data)
        serializer.is_valid(raise_exception=True)
        transcript = serializer.validated_data["audio"]
        del data["audio"]
        response = self._search(request, {**data, "q": transcript}, SearchTextQuerySerializer, voice=True)
        response.data["transcript"] = transcript
        return response
