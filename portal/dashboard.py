"""The home dashboard: one card per deployment, with a line from each app that has one.

This and portal/urls.py are the only places that look up at the apps, to wire them.
"""

from deployments.backups.dashboard import summary as backup_summary
from deployments.status import recorded_status
from worklists.dashboard import summary as worklist_summary

from .sites import deployments_of


def deployment_cards(user):
    """From the database only: each Orthanc's status is the one the periodic check recorded."""
    cards = []
    for deployment in deployments_of(user):
        card = recorded_status(deployment)
        card["worklist_summary"] = worklist_summary(deployment)
        card["backup_summary"] = backup_summary(deployment)
        cards.append(card)
    return cards
