"""What push_config and adopt_orthanc share: the admin account of an Orthanc that does not know
the portal's account yet, read for one push and kept in this process's memory only."""

import getpass
import sys

from django.core.management.base import CommandError
from django.db import transaction

from deployments.models.orthanc_user import validate_orthanc_username
from deployments.push import PushError, deployment_push, revision_create


def add_login_arguments(parser):
    parser.add_argument(
        "--admin-user",
        metavar="NAME",
        help="an existing admin account of the running Orthanc, for a first push into an Orthanc that does not "
        "know the portal's account yet; its password is asked for (never stored, never logged)",
    )
    parser.add_argument(
        "--admin-password-stdin",
        action="store_true",
        help="read that account's password from the first line of standard input instead of asking",
    )


def read_login(options, stdin=None):
    username = options.get("admin_user")
    if not username:
        if options.get("admin_password_stdin"):
            raise CommandError("--admin-password-stdin needs --admin-user")
        return None
    try:
        validate_orthanc_username(username)
    except Exception as exc:  # a ValidationError: its message is the sentence
        raise CommandError(f"--admin-user: {' '.join(getattr(exc, 'messages', [str(exc)]))}") from None
    if options.get("admin_password_stdin"):
        password = (stdin or sys.stdin).readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password of {username} on the running Orthanc: ")
    if not password:
        raise CommandError(f"no password given for {username}")
    return username, password


def push_now(deployment, reason, login=None) -> str:
    """Record a revision and push it in this process; a failure is one sentence, never a traceback."""
    deployment = type(deployment).objects.get(pk=deployment.pk)  # the rows as saved, not a stale copy
    try:
        with transaction.atomic():
            revision = revision_create(deployment, reason=reason)
        message = deployment_push(deployment.pk, login=login)
    except PushError as exc:
        raise CommandError(f"push failed: {exc}") from None
    revision.refresh_from_db()
    if revision.state == revision.State.SUPERSEDED:
        message += f" (revision {revision.number} was superseded by a newer save)"
    return message
