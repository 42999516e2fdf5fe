"""The storefront's voice search fallback: ``POST /search/voice/`` with a WAV ``audio`` file.

Browsers with speech recognition never call it (``static/multimodal_search/voice.js`` fills the
search box itself); the others record, encode a WAV and post it here. The words heard are searched
by a 303 to ``/search/?q=...``, so the results page is the ordinary, shareable one.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from multimodal_search import services


class SeeOther(HttpResponseRedirect):
    status_code = 303


@require_POST
def voice_search(request: HttpRequest) -> HttpResponse:
    """Transcribe the posted recording and redirect (303) to the search page for the words heard.

    A bad recording is a 400 whose plain-text body is the message shown to the shopper.
    """
    try:
        services.check_recording_length(request.META.get("CONTENT_LENGTH"))  # from the header, before the body
        upload = request.FILES.get("audio")
        if upload is None:
            raise services.SearchError("Send the recording as the form's `audio` file.")
        transcript = services.transcribe(upload)
    except services.SearchError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    if not transcript:
        return HttpResponseBadRequest(
            "No words were heard; speak closer to the microphone or type instead.",
            content_type="text/plain; charset=utf-8",
        )
    request.session[services.VOICE_SESSION_KEY] = transcript  # the search page logs it as a voice search
    return SeeOther(f"{reverse('multimodal_search:search')}?{urlencode({'q': transcript})}")
