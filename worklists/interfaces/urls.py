from django.urls import path

from . import views

app_name = "interfaces"
urlpatterns = [
    path("", views.interfaces_page, name="page"),
    path("resend/<int:pk>/", views.resend_dead_letter, name="resend"),
]
