from django.apps import AppConfig


class MultimodalSearchConfig(AppConfig):
    name = "multimodal_search"
    verbose_name = "Multimodal search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from multimodal_search import checks, receivers  # noqa: F401
        from multimodal_search.api import checks as api_checks  # noqa: F401

        receivers.connect()
