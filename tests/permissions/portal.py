from datetime import timedelta

from django.utils import timezone

from . import G, P, Row


def _token_world(world):
    from portal import tokens

    expires = timezone.now() + timedelta(days=30)
    world.api_token, _ = tokens.token_create(world.scheduler, "Matrix practice system", expires)


WORLD_HOOKS = [_token_world]

MATRIX = {
    # Schedulers see only the worklist: the home page sends them there.
    "dashboard": G(admin=200, scheduler=302, viewer=200),
    "dashboard_cards": G(admin=200, scheduler=403, viewer=200),
    "healthz": Row(200, 200, 200, anonymous=200),
    "login": Row(200, 200, 200, anonymous=200),
    "logout": Row(302, 302, 302, anonymous=302, method="post"),
    "password_change": G(200, 200, 200),
    "password_change_done": G(200, 200, 200),
    "sites": G(viewer=200),
    "audit_log": G(),
    "staff_list": G(),
    "staff_create": G(),
    "staff_edit": G(kwargs={"pk": "viewer.pk"}),
    "staff_reset_password": P(admin=200, kwargs={"pk": "viewer.pk"}),
    # Schedulers make and revoke their own tokens (the world's token is the Scheduler's);
    # tests/test_api_tokens.py covers another account's token.
    "api_tokens": G(scheduler=200),
    "api_token_create": G(scheduler=200),
    "api_token_revoke": P(scheduler=302, kwargs={"pk": "api_token.pk"}),
    # Prometheus's bearer token only: a signed-in session is not enough (tests/test_metrics.py).
    "metrics": Row(401, 401, 401, anonymous=401),
    "metrics_token": G(),
}
