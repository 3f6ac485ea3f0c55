"""``manage.py create_api_token <username> --name "Practice system"``: a named API token, printed once."""

import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal import tokens
from portal.forms import ApiTokenForm


class Command(BaseCommand):
    help = "Make a named API token acting as a staff account (Admin or Scheduler) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("username", help="the account the token acts as")
        parser.add_argument("--name", required=True, help='what will use it, e.g. "Practice system"')
        parser.add_argument(
            "--days",
            type=int,
            default=tokens.DEFAULT_DAYS,
            help=f"valid for this many days (at most {tokens.MAX_DAYS})",
        )

    def handle(self, username, name, days, **options):
        owner = tokens.possible_owners().filter(username=username).first()
        if owner is None:
            raise CommandError(f"No active Admin or Scheduler account named {username!r}.")
        # The same rules as the page: name length, no duplicate name in use, expiry limits.
        valid_until = timezone.localdate() + datetime.timedelta(days=days)
        form = ApiTokenForm(
            {"name": name, "user": owner.pk, "valid_until": valid_until},
            acting_user=None,
            owners=tokens.possible_owners(),
        )
        if not form.is_valid():
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
            raise CommandError(problems)
        row, token = tokens.token_create(
            owner, form.cleaned_data["name"], tokens.end_of(form.cleaned_data["valid_until"]), source="command"
        )
        self.stderr.write(
            f"Token “{row.name}” for {owner.username}, valid until {timezone.localtime(row.expires_at):%Y-%m-%d}; shown once:"
        )
        self.stdout.write(token)
