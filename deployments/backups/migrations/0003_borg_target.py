from django.db import migrations, models

import portal.crypto


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_retention_last_and_hourly"),
    ]

    operations = [
        migrations.AddField(
            model_name="backupschedule",
            name="kind",
            field=models.CharField(
                choices=[
                    ("rsync", "rsync over SSH (plain files, fast local copy)"),
                    ("borg", "BorgBackup over SSH (encrypted, append-only, off-site)"),
                ],
                default="rsync",
                max_length=8,
                verbose_name="target kind",
            ),
        ),
        migrations.AddField(
            model_name="backupschedule",
            name="borg_passphrase",
            field=portal.crypto.EncryptedTextField(blank=True),
        ),
        migrations.AddField(
            model_name="backupschedule",
            name="borg_key",
            field=portal.crypto.EncryptedTextField(blank=True),
        ),
        migrations.AddField(
            model_name="backupschedule",
            name="borg_key_exported_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
