from django.urls import path

from .views import config, deployment, modalities, users
from .views import importer as import_views
from .views import security as security_views

app_name = "deployments"
urlpatterns = [
    path("", deployment.deployment_list, name="list"),
    path("new/", deployment.deployment_create, name="create"),
    path("modalities/", modalities.modality_index, name="modalities"),
    path("orthanc-users/", users.user_index, name="orthanc_users"),
    path("<slug:slug>/", deployment.deployment_detail, name="detail"),
    path("<slug:slug>/edit/", deployment.deployment_edit, name="edit"),
    path("<slug:slug>/check/", deployment.deployment_check, name="check"),
    path("<slug:slug>/preview/", config.config_preview, name="preview"),
    path("<slug:slug>/push/", config.config_push, name="push"),
    path("<slug:slug>/revisions/", config.revision_list, name="revisions"),
    path("<slug:slug>/revisions/<int:number>/", config.revision_detail, name="revision"),
    path("<slug:slug>/revisions/<int:number>/rollback/", config.revision_rollback, name="rollback"),
    path("<slug:slug>/modalities/new/", modalities.modality_edit, name="modality_create"),
    path("<slug:slug>/modalities/<int:pk>/", modalities.modality_edit, name="modality_edit"),
    path("<slug:slug>/modalities/<int:pk>/delete/", modalities.modality_delete, name="modality_delete"),
    path("<slug:slug>/modalities/<int:pk>/echo/", modalities.modality_echo, name="modality_echo"),
    path("<slug:slug>/orthanc-users/new/", users.user_edit, name="user_create"),
    path("<slug:slug>/orthanc-users/<int:pk>/", users.user_edit, name="user_edit"),
    path("<slug:slug>/orthanc-users/<int:pk>/rotate/", users.user_rotate, name="user_rotate"),
    path("<slug:slug>/orthanc-users/<int:pk>/delete/", users.user_delete, name="user_delete"),
    path("<slug:slug>/service-account/rotate/", users.service_rotate, name="service_rotate"),
    path("<slug:slug>/import/", import_views.deployment_import, name="import"),
    path("<slug:slug>/adopt/", import_views.deployment_adoption, name="adoption"),
    path("<slug:slug>/security/", security_views.deployment_security, name="security"),
    path("<slug:slug>/security/audit/", security_views.security_audit_start, name="security_audit"),
]
