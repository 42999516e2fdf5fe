from django.urls import include, path, re_path

from multimodal_search.api import events, recommend, schema, suggest, views, voice

app_name = "multimodal_search_api"

endpoints = [
    path("search/", views.SearchView.as_view(), name="search"),
    path("search/voice/", voice.VoiceSearchView.as_view(), name="search_voice"),
    path("products/<str:identifier>/similar/", views.SimilarView.as_view(), name="similar"),
    path("products/<str:identifier>/also-viewed/", recommend.AlsoViewedView.as_view(), name="also_viewed"),
    path("popular/", recommend.PopularView.as_view(), name="popular"),
    path("recommendations/", recommend.RecommendationsView.as_view(), name="recommendations"),
    path("index/status/", views.IndexStatusView.as_view(), name="index_status"),
    path("autocomplete/", suggest.AutocompleteView.as_view(), name="autocomplete"),
    path("events/", events.EventsView.as_view(), name="events"),
]

urlpatterns = [
    # the same views under the version prefix (names: "multimodal_search_api:v1:search"...) and without it
    path(f"{schema.API_VERSION}/", include((endpoints, schema.API_VERSION))),
    *endpoints,
    path("schema/", schema.SchemaView.as_view(), name="schema"),
    path("docs/", schema.SwaggerView.as_view(), name="docs"),
    path("redoc/", schema.RedocView.as_view(), name="redoc"),
    # last: any other path under the API is a JSON 404, not the project's HTML page
    re_path(r"", views.NotFoundView.as_view(), name="not_found"),
]
