from django.db import migrations, models

import deployments.backups.validators


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0004_alerts_pings_and_verification_across_history"),
    ]

    operations = [
        migrations.AlterField(
            model_name="backupschedule",
            name="kind",
            field=models.CharField(
                choices=[
                    ("rsync", "rsync over SSH (plain files, fast local copy)"),
                    ("borg", "BorgBackup over SSH (encrypted, append-only, off-site)"),
                    ("local", "Local disk (a mounted USB disk or NAS folder; encrypted Borg repository)"),
                ],
                default="rsync",
                max_length=8,
                verbose_name="target kind",
            ),
        ),
        migrations.AddField(
            model_name="backupschedule",
            name="mount_point",
            field=models.CharField(
                blank=True,
                help_text="Local disk: where the disk is mounted; a run refuses to start when nothing is mounted there.",
                max_length=255,
                validators=[deployments.backups.validators.validate_remote_folder],
            ),
        ),
    ]
