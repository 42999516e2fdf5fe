from django.apps import AppConfig, apps


class MultimodalSearchConfig(AppConfig):
    name = "multimodal_search"
    verbose_name = "Multimodal search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from multimodal_search import checks, receivers  # noqa: F401
        from multimodal_search.api import checks as api_checks  # noqa: F401

        if apps.is_installed("django.contrib.admin"):
            from multimodal_search import admin_analytics  # noqa: F401  (admin.py belongs to the index pages)

        receivers.connect()
