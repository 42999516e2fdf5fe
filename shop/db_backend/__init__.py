"""Database engine for the embedded PostgreSQL server: ``ENGINE = "shop.db_backend"`` (see ``base``)."""
