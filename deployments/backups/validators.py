"""Checks of what reaches ssh and rsync. Values are passed as arguments, never through a local
shell; the few remote commands are quoted, and these checks keep shell syntax out of them anyway."""

import ipaddress
import re

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email

HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
# Letters, digits and . _ - + @ / only: nothing a shell would read as syntax.
FOLDER_RE = re.compile(r"^/[A-Za-z0-9._+@/-]*$")
SNAPSHOT_RE = re.compile(r"^\d{8}T\d{6}Z$")


def validate_host(value):
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if not HOSTNAME_RE.match(value or ""):
        raise ValidationError(
            "Enter a host name (letters, digits, dots and hyphens, not starting with a hyphen) or an IP address."
        )


def validate_user(value):
    if not USER_RE.match(value or ""):
        raise ValidationError("A user name is 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or '_'.")


def validate_remote_folder(value):
    if not value or not value.startswith("/"):
        raise ValidationError("The remote folder must be an absolute path (starting with /).")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValidationError("The remote folder must not contain '.' or '..' path components.")
    if not FOLDER_RE.match(value):
        bad = sorted({c for c in value if not re.match(r"[A-Za-z0-9._+@/-]", c)})
        shown = " ".join(repr(c) for c in bad)
        raise ValidationError(f"The remote folder may only contain letters, digits and . _ - + @ /; not {shown}.")
    if value.rstrip("/") == "":
        raise ValidationError("The remote folder cannot be the root folder.")


def is_snapshot_name(name):
    return bool(SNAPSHOT_RE.match(name))


PING_URL_MAX = 300
EMAILS_MAX = 500


def validate_ping_url(value):
    """The URL the portal pings around each run: http(s) only, one line, no credentials in it."""
    if len(value) > PING_URL_MAX:
        raise ValidationError(f"The ping URL may be at most {PING_URL_MAX} characters long.")
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise ValidationError(
            "Enter an http:// or https:// URL, such as the ping URL healthchecks.io shows for a check."
        ) from None
    if "@" in value.split("/", 3)[2]:
        raise ValidationError("Put no user name or password in the ping URL: the check's UUID is its secret.")


def email_list(value):
    return [part.strip() for part in (value or "").replace(";", ",").split(",") if part.strip()]


def validate_email_list(value):
    if len(value) > EMAILS_MAX:
        raise ValidationError(f"At most {EMAILS_MAX} characters of addresses.")
    bad = []
    for address in email_list(value):
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        raise ValidationError(f"Not an e-mail address: {', '.join(bad)[:200]}. Separate addresses with commas.")
