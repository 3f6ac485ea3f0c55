import datetime

from django.http import Http404

from deployments.models import Deployment
from portal.sites import deployments_of


def pick_deployment(request):
    """The deployment chosen with ?d=<slug> (or the form's d), else the first with worklists; only
    among the sites the account works for (another site's slug answers 404)."""
    deployments = list(deployments_of(request.user).filter(worklists_enabled=True).only("id", "name", "slug"))
    slug = request.GET.get("d") or request.POST.get("d")
    if slug:
        for deployment in deployments:
            if deployment.slug == slug:
                return Deployment.objects.get(pk=deployment.pk), deployments
        raise Http404("No such deployment")
    if not deployments:
        return None, []
    return Deployment.objects.get(pk=deployments[0].pk), deployments


def parse_day(value, default=None):
    try:
        return datetime.date.fromisoformat(value) if value else default
    except ValueError:
        return default
