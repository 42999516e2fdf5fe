"""Backbone outputs kept per photo and per text, keyed by the backbone (not the head version)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("multimodal_search", "0007_usable_hnsw_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="BackboneVector",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("backbone_id", models.CharField(max_length=200)),
                ("digest", models.CharField(max_length=64)),
                ("vector", models.BinaryField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("backbone_id", "digest"), name="mmsearch_backbone_uniq")
                ],
            },
        ),
    ]
