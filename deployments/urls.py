from django.urls import path

from .views import deployment

app_name = "deployments"
urlpatterns = [
    path("", deployment.deployment_list, name="list"),
    path("new/", deployment.deployment_create, name="create"),
    path("<slug:slug>/", deployment.deployment_detail, name="detail"),
    path("<slug:slug>/edit/", deployment.deployment_edit, name="edit"),
    path("<slug:slug>/check/", deployment.deployment_check, name="check"),
]
