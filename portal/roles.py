"""Staff roles. Each is a Django group whose permissions are listed here as patterns of
``app_label.codename``; ``sync_roles`` makes the groups match (data migration, post_migrate)."""

from fnmatch import fnmatch
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

ADMIN, SCHEDULER, VIEWER = "Admin", "Scheduler", "Viewer"
ROLE_NAMES = [ADMIN, SCHEDULER, VIEWER]
ROLE_HELP = {
    ADMIN: "Everything, including Orthanc configuration, backups and staff accounts.",
    SCHEDULER: "The worklist only: schedules, edits and cancels ultrasound appointments; makes its own API tokens.",
    VIEWER: "Read-only dashboards: Orthanc status, deployments and backups.",
}
ROLE_PERMISSIONS = {
    ADMIN: ["portal.*", "deployments.*", "worklists.*", "auth.*", "django_celery_beat.*", "backups.*", "hl7.*"],
    # Schedulers connect the practice system to the worklist: they make its API tokens.
    SCHEDULER: ["worklists.view_*", "worklists.add_*", "worklists.change_*", "portal.manage_own_apitokens"],
    VIEWER: ["portal.view_dashboard", "deployments.view_*", "backups.view_*"],
}
MANAGED_APPS = {"portal", "deployments", "backups", "worklists", "auth", "django_celery_beat", "hl7"}


def sync_roles(apps=None):
    """Create the role groups and give each exactly the permissions its patterns match."""
    if apps is None:
        from django.apps import apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = list(Permission.objects.filter(content_type__app_label__in=MANAGED_APPS).select_related("content_type"))
    for name, patterns in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [p for p in perms if any(fnmatch(f"{p.content_type.app_label}.{p.codename}", pat) for pat in patterns)]
        group.permissions.set(wanted)


def sync_after_migrate(sender, **kwargs):
    # post_migrate comes once per app, each after its own permissions exist: sync on each.
    if sender.label in MANAGED_APPS:
        sync_roles()


def role_of(user):
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return ADMIN
    names = {g.name for g in user.groups.all()}
    return next((r for r in ROLE_NAMES if r in names), None)


# Django refuses to redirect to an address over 16,384 characters (a bare 400): past this length
# the visitor comes back to the page's path alone after the login, or to the home page.
NEXT_LIMIT = 2048


def login_redirect(request):
    """The login page, which then sends the visitor on to where they were going."""
    for target in (request.get_full_path(), request.path):
        if len(target) <= NEXT_LIMIT:
            return redirect_to_login(target)
    return redirect_to_login("/")


def login_required(view):
    """Any signed-in account; anonymous → login page."""
    return require_perm()(view)


def require_perm(*perms):
    """Anonymous → login page; signed in without the permission → 403."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return login_redirect(request)
            if not request.user.has_perms(perms):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


# Pages for an account that works for every site (portal/sites.py require_global).
GLOBAL_ONLY = {"staff_list", "metrics_token"}

NAV = [
    ("Dashboard", "dashboard", "portal.view_dashboard"),
    ("Sites", "sites", "portal.view_dashboard"),
    ("Worklist", "worklists:index", "worklists.view_worklistentry"),
    ("Modalities", "deployments:modalities", "deployments.view_deployment"),
    ("Orthanc users", "deployments:orthanc_users", "deployments.view_deployment"),
    ("Deployments", "deployments:list", "deployments.view_deployment"),
    ("Backups", "backups:dashboard", "backups.view_backupschedule"),
    ("Audit log", "audit_log", "portal.view_auditentry"),
    ("Staff", "staff_list", "portal.manage_staff"),
    ("API tokens", "api_tokens", "portal.manage_own_apitokens"),
    ("Metrics", "metrics_token", "portal.manage_all_apitokens"),
]


def context_processor(request):
    from .sites import works_everywhere

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": []}
    return {
        "nav": [
            (label, url)
            for label, url, perm in NAV
            if user.has_perm(perm) and (url not in GLOBAL_ONLY or works_everywhere(user))
        ],
        "user_role": role_of(user),
        "all_sites": works_everywhere(user),
    }
