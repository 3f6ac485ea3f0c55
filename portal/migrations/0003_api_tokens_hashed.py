import datetime
import hashlib

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone
from django.utils.dateparse import parse_datetime


def hash_clear_tokens(apps, schema_editor):
    """Tokens of DRF's authtoken, stored in clear, become hashed named tokens that keep working
    for a year (integrations are not cut off by the upgrade); then their clear table is dropped."""
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("portal", "ApiToken")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        for key, user_id, created in cursor.fetchall():
            if isinstance(created, str):
                created = parse_datetime(created)
            if created is not None and timezone.is_naive(created):
                created = timezone.make_aware(created, datetime.UTC)
            ApiToken.objects.create(
                user_id=user_id,
                name="Token made before named tokens",
                prefix=key[:8],
                digest=hashlib.sha256(key.encode()).hexdigest(),
                created_at=created or now,
                expires_at=now + datetime.timedelta(days=365),
            )
        cursor.execute("DROP TABLE authtoken_token")
        # So that the app, if ever installed again, makes its table anew.
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0002_roles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('prefix', models.CharField(max_length=16)),
                ('digest', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField()),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_reason', models.CharField(blank=True, max_length=200)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': [models.OrderBy(models.F('revoked_at'), descending=True, nulls_first=True), '-created_at', '-id'],
                'permissions': [('manage_own_apitokens', 'Can create and revoke their own API tokens'), ('manage_all_apitokens', 'Can create and revoke API tokens of any staff account')],
                'default_permissions': (),
            },
        ),
        migrations.RunPython(hash_clear_tokens, migrations.RunPython.noop),
    ]
