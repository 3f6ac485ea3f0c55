from . import G, P, Row

MATRIX = {
    # Schedulers see only the worklist: the home page sends them there.
    "dashboard": G(admin=200, scheduler=302, viewer=200),
    "dashboard_cards": G(admin=200, scheduler=403, viewer=200),
    "healthz": Row(200, 200, 200, anonymous=200),
    "login": Row(200, 200, 200, anonymous=200),
    "logout": Row(302, 302, 302, anonymous=302, method="post"),
    "password_change": G(200, 200, 200),
    "password_change_done": G(200, 200, 200),
    "audit_log": G(),
    "staff_list": G(),
    "staff_create": G(),
    "staff_edit": G(kwargs={"pk": "viewer.pk"}),
    "staff_reset_password": P(admin=200, kwargs={"pk": "viewer.pk"}),
}
