"""API tokens: made, checked and revoked here. Only a token's SHA-256 digest is stored.

A token is ``ocp_<8 hex>_<43 random characters>``: 256 random bits, so a plain SHA-256 is
enough (no salt or slow hash needed) and the digest itself is the lookup key. The first part
(``ocp_<8 hex>``) is the prefix shown in the list, to tell tokens apart; it is not secret.
"""

import datetime
import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from . import audit
from .models import ApiToken, AuditEntry
from .roles import ADMIN, SCHEDULER

# The start every token shares: not a secret.
TOKEN_START = "ocp_"  # noqa: S105  # nosec B105
DEFAULT_DAYS = 365
MAX_DAYS = 2 * 365
# "Last used" to the minute: writing it on every request would make every API read a write.
LAST_USED_PRECISION = datetime.timedelta(minutes=1)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def end_of(day: datetime.date) -> datetime.datetime:
    """The last moment of ``day`` in the portal's time zone: a token is valid through that day."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.max))


def possible_owners():
    """Accounts a token may act as: active, with a role that can use the API."""
    User = get_user_model()
    return (
        User.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name__in=[ADMIN, SCHEDULER]))
        .distinct()
        .order_by("username")
    )


def manages_all(user):
    """An Admin of every site: a token acting as another account could reach sites beyond one's own."""
    from .sites import works_everywhere

    return user.has_perm("portal.manage_all_apitokens") and works_everywhere(user)


def tokens_visible_to(user):
    """An Admin of every site sees and revokes everyone's tokens; anyone else only their own."""
    tokens = ApiToken.objects.select_related("user", "created_by")
    if manages_all(user):
        return tokens
    return tokens.filter(user=user)


def _shown(token):
    # The audit trail names the token; its digest stays out of it.
    return {
        "user": token.user.get_username(),
        "name": token.name,
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat(),
    }


def token_create(owner, name, expires_at, *, by=None, source=None):
    """A new token acting as ``owner``. Returns the row and the token, which is kept nowhere."""
    public = TOKEN_START + secrets.token_hex(4)
    token = f"{public}_{secrets.token_urlsafe(32)}"
    row = ApiToken.objects.create(
        user=owner,
        name=name,
        prefix=public,
        digest=digest_of(token),
        expires_at=expires_at,
        created_by=audit.actor_of(by),
    )
    audit.record(by, AuditEntry.Action.CREATE, row, None, _shown(row), source=source)
    return row, token


def token_revoke(token, reason, *, by=None):
    if token.revoked_at is not None:
        return
    token.revoked_at = timezone.now()
    token.revoked_reason = reason[:200]
    token.save(update_fields=["revoked_at", "revoked_reason"])
    audit.record(by, AuditEntry.Action.ACTION, token, summary=f"API token revoked: {reason}")


def tokens_revoke_all(user, reason, *, by=None) -> int:
    """Revoke every token of ``user`` not yet revoked; returns how many."""
    tokens = list(user.api_tokens.filter(revoked_at__isnull=True))
    for token in tokens:
        token_revoke(token, reason, by=by)
    return len(tokens)


class ApiTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``, checked against the stored digests."""

    def authenticate_credentials(self, key):
        token = ApiToken.objects.select_related("user").filter(digest=digest_of(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"This token was revoked on {timezone.localtime(token.revoked_at):%Y-%m-%d}: ask for a new one."
            )
        now = timezone.now()
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed(
                f"This token expired on {timezone.localtime(token.expires_at):%Y-%m-%d}: ask for a new one."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The account of this token is deactivated.")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token
