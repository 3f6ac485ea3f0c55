from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .roles import login_required  # before Django's own: it keeps the login redirect within Django's limit

urlpatterns = [
    path("", views.home, name="dashboard"),
    path("dashboard/cards/", views.dashboard_cards, name="dashboard_cards"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        login_required(auth_views.PasswordChangeView.as_view(template_name="accounts/password_change.html")),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        login_required(auth_views.PasswordChangeDoneView.as_view(template_name="accounts/password_change_done.html")),
        name="password_change_done",
    ),
    path("sites/", views.sites_overview, name="sites"),
    path("audit/", views.audit_log, name="audit_log"),
    path("staff/", views.staff_list, name="staff_list"),
    path("staff/new/", views.staff_create, name="staff_create"),
    path("staff/<int:pk>/", views.staff_edit, name="staff_edit"),
    path("staff/<int:pk>/reset-password/", views.staff_reset_password, name="staff_reset_password"),
    path("api-tokens/", views.api_tokens, name="api_tokens"),
    path("api-tokens/new/", views.api_token_create, name="api_token_create"),
    path("api-tokens/<int:pk>/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("metrics", views.metrics_view, name="metrics"),
    path("metrics/token/", views.metrics_token, name="metrics_token"),
    path("deployments/", include("deployments.urls")),
    path("backups/", include("deployments.backups.urls", namespace="backups")),
    path("worklists/interfaces/<slug:slug>/hl7/", include("worklists.interfaces.hl7.urls")),
    path("worklists/interfaces/<slug:slug>/", include("worklists.interfaces.urls")),
    path("worklists/", include("worklists.urls")),
    path("api/", include("worklists.api_urls")),
]
