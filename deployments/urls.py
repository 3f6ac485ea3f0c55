from django.urls import path

from . import views

app_name = "deployments"
urlpatterns = [
    path("", views.deployment_list, name="list"),
    path("new/", views.deployment_create, name="create"),
    path("<slug:slug>/", views.deployment_detail, name="detail"),
    path("<slug:slug>/edit/", views.deployment_edit, name="edit"),
    path("<slug:slug>/check/", views.deployment_check, name="check"),
]
