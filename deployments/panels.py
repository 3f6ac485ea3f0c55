"""Panels other apps add to the deployment page.

The worklists and backups apps build on deployments, not the other way round: they register
a panel here (in their AppConfig.ready) instead of the deployment page importing them.
"""

from django.template.loader import render_to_string

PANELS = []  # (order, template, context function taking the deployment)


def register(template, context, order=50):
    if not any(t == template for _, t, _ in PANELS):
        PANELS.append((order, template, context))
        PANELS.sort(key=lambda p: p[0])


def panels_for(deployment, request=None):
    """The registered panels rendered to HTML, in their order."""
    return [render_to_string(template, context(deployment), request) for _, template, context in PANELS]
