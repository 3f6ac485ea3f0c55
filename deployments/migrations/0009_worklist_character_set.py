from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0008_deployment_recorded_status"),
    ]

    operations = [
        migrations.AlterField(
            model_name="deployment",
            name="default_encoding",
            field=models.CharField(
                choices=[
                    ("auto", "Automatic: what every worklist station reads (recommended)"),
                    ("Utf8", "UTF-8"),
                    ("Latin1", "Latin-1 (Orthanc's own default)"),
                    ("Ascii", "ASCII"),
                ],
                default="auto",
                help_text="Orthanc's DefaultEncoding: every worklist answer leaves in it, whatever the machine asks. "
                "Automatic sends UTF-8 while every worklist station reads UTF-8 and Latin-1 as soon as one shows only "
                "Latin-1; a name a station cannot receive intact is refused when it is scheduled.",
                max_length=16,
                verbose_name="worklist character set",
            ),
        ),
    ]
