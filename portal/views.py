import secrets

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from deployments.models import Deployment

from . import audit, metrics, overview, tokens
from .dashboard import deployment_cards
from .forms import ApiTokenForm, AuditFilterForm, StaffForm
from .models import AuditEntry, MetricsToken
from .roles import SCHEDULER, require_perm, role_of
from .sites import forget, require_global, scoped, site_ids


def healthz(request):
    connection.ensure_connection()
    return HttpResponse("ok\n", content_type="text/plain")


def home(request):
    if request.user.is_authenticated and not request.user.has_perm("portal.view_dashboard"):
        if role_of(request.user) == SCHEDULER:
            return redirect("worklists:index")
    return dashboard(request)


@require_perm("portal.view_dashboard")
def dashboard(request):
    return render(request, "portal/dashboard.html", {"cards": deployment_cards(request.user)})


@require_perm("portal.view_dashboard")
def dashboard_cards(request):
    """The live part of the dashboard, refreshed by htmx every few seconds."""
    return render(request, "portal/_dashboard_cards.html", {"cards": deployment_cards(request.user)})


@require_perm("portal.view_dashboard")
def sites_overview(request):
    """One line per site, sortable (?sort=name, orthanc, lag, backup, pending, agent; - for reverse)."""
    sort = request.GET.get("sort", overview.DEFAULT_SORT)
    if sort.removeprefix("-") not in overview.SORTS:
        sort = overview.DEFAULT_SORT  # an unknown column sorts by name rather than failing
    rows = overview.site_rows(request.user, sort)
    seconds = int(settings.AGENT_UNREACHABLE_AFTER.total_seconds())
    minutes = seconds // 60
    unreachable_after = f"{minutes} minute{'s' * (minutes != 1)}" if seconds % 60 == 0 else f"{seconds} seconds"
    return render(
        request,
        "portal/sites.html",
        {"rows": rows, "sort": sort, "columns": SITE_COLUMNS, "unreachable_after": unreachable_after},
    )


SITE_COLUMNS = [
    ("name", "Site"),
    ("orthanc", "Orthanc"),
    ("lag", "Worklist sync"),
    ("backup", "Last backup"),
    ("pending", "Waiting to apply"),
    ("agent", "Site worker"),
]


@require_perm("portal.view_auditentry")
def audit_log(request):
    # An account limited to some sites sees the changes of those sites only.
    visible = scoped(AuditEntry.objects.all(), request.user, "deployment_id")
    object_types = visible.order_by().values_list("object_type", flat=True).distinct()
    form = AuditFilterForm(request.GET or None, object_types=sorted(object_types))
    entries = visible.select_related("actor")
    if form.is_valid():
        data = form.cleaned_data
        if data["user"]:
            entries = entries.filter(actor_name__iexact=data["user"])
        if data["object_type"]:
            entries = entries.filter(object_type=data["object_type"])
        if data["date_from"]:
            entries = entries.filter(at__date__gte=data["date_from"])
        if data["date_to"]:
            entries = entries.filter(at__date__lte=data["date_to"])
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "portal/audit_log.html", {"form": form, "page": page, "query": query.urlencode()})


@require_perm("portal.manage_staff")
@require_global
def staff_list(request):
    users = User.objects.prefetch_related("groups", "site_access__deployments").order_by("username")
    return render(request, "portal/staff_list.html", {"users": [(u, role_of(u), _sites_shown(u)) for u in users]})


def _sites_shown(user):
    access = getattr(user, "site_access", None)
    if user.is_superuser or access is None or access.all_sites:
        return ["every site"]
    return [d.name for d in access.deployments.all()]


def _staff_snapshot(user):
    ids = site_ids(user)
    sites = "all" if ids is None else sorted(Deployment.objects.filter(pk__in=ids).values_list("slug", flat=True))
    return {**audit.snapshot(user), "role": role_of(user), "sites": sites}


@require_perm("portal.manage_staff")
@require_global
def staff_create(request):
    form = StaffForm(request.POST or None, acting_user=request.user)
    if request.method == "POST" and form.is_valid():
        password = _new_password()
        form.instance.set_password(password)
        user = form.save()
        audit.record(request, AuditEntry.Action.CREATE, user, None, _staff_snapshot(user))
        return render(request, "portal/password_once.html", {"staff": user, "password": password})
    return render(request, "portal/staff_form.html", {"form": form})


@require_perm("portal.manage_staff")
@require_global
def staff_edit(request, pk):
    staff = get_object_or_404(User, pk=pk)
    before = _staff_snapshot(staff)
    form = StaffForm(request.POST or None, instance=staff, acting_user=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        forget(staff)
        audit.record(request, AuditEntry.Action.UPDATE, staff, before, _staff_snapshot(staff))
        messages.success(request, f"Saved {staff.username}.")
        if before["is_active"] and not staff.is_active:
            revoked = tokens.tokens_revoke_all(staff, "account deactivated", by=request)
            if revoked:
                messages.success(request, f"Revoked the {revoked} API token(s) of {staff.username}.")
        return redirect("staff_list")
    return render(request, "portal/staff_form.html", {"form": form, "staff": staff})


@require_POST
@require_perm("portal.manage_staff")
@require_global
def staff_reset_password(request, pk):
    staff = get_object_or_404(User, pk=pk)
    password = _new_password()
    staff.set_password(password)
    staff.save(update_fields=["password"])
    axes_reset(username=staff.username)
    audit.record(request, AuditEntry.Action.ACTION, staff, summary="password reset and login lockout cleared")
    # Whoever knew the old password may have made tokens with it.
    revoked = tokens.tokens_revoke_all(staff, "password reset", by=request)
    return render(request, "portal/password_once.html", {"staff": staff, "password": password, "revoked": revoked})


def _new_password():
    return secrets.token_urlsafe(18)


# An Admin of every site makes and revokes anyone's tokens; others only their own (portal/tokens.py).


@require_perm("portal.manage_own_apitokens")
def api_tokens(request):
    return render(
        request,
        "portal/api_tokens.html",
        {
            "tokens": tokens.tokens_visible_to(request.user),
            "everyone": tokens.manages_all(request.user),
        },
    )


@require_perm("portal.manage_own_apitokens")
def api_token_create(request):
    owners = tokens.possible_owners() if tokens.manages_all(request.user) else None
    form = ApiTokenForm(request.POST or None, acting_user=request.user, owners=owners)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        row, token = tokens.token_create(form.owner, data["name"], tokens.end_of(data["valid_until"]), by=request)
        return render(request, "portal/api_token_once.html", {"row": row, "token": token})
    return render(request, "portal/api_token_form.html", {"form": form})


@require_POST
@require_perm("portal.manage_own_apitokens")
def api_token_revoke(request, pk):
    token = get_object_or_404(tokens.tokens_visible_to(request.user), pk=pk)
    tokens.token_revoke(token, f"revoked by {request.user.get_username()}", by=request)
    messages.success(request, f"Revoked the token “{token.name}” ({token.prefix}…): it no longer works.")
    return redirect("api_tokens")


@require_GET
def metrics_view(request):
    """For Prometheus: no session, no login page; a bearer token or 401."""
    if not metrics.token_valid(request.headers.get("Authorization", "")):
        response = HttpResponse(
            "A metrics token is required: Authorization: Bearer <token> (an Admin makes one on the Metrics page).\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


@require_perm("portal.manage_all_apitokens")
@require_global  # the metrics cover every site
def metrics_token(request):
    if request.method == "POST":
        row, token = metrics.metrics_token_create(by=request)
        return render(request, "portal/metrics_token_once.html", {"row": row, "token": token})
    return render(
        request,
        "portal/metrics_token.html",
        {"row": MetricsToken.objects.first(), "url": request.build_absolute_uri("/metrics")},
    )
