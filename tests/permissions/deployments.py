import json

from deployments.models import ConfigRevision, Modality, OrthancUser
from deployments.render import render_for
from deployments.state import model_state

from . import G, P

SLUG = {"slug": "deployment.slug"}


def _objects(world):
    d = world.deployment
    world.modality = Modality.objects.create(deployment=d, name="US1", aet="US1", host="127.0.0.1", port=104)
    world.orthanc_user = OrthancUser.objects.create(deployment=d, username="reader", password="x" * 24)
    world.revision = ConfigRevision.objects.create(deployment=d, number=1, state=ConfigRevision.State.APPLIED)
    world.revision.files = render_for(d)
    world.revision.state_json = json.dumps(model_state(d))
    world.revision.save()


WORLD_HOOKS = [_objects]

MATRIX = {
    "deployments:list": G(viewer=200),
    "deployments:create": G(),
    "deployments:detail": G(viewer=200, kwargs=SLUG),
    "deployments:edit": G(kwargs=SLUG),
    "deployments:check": P(kwargs=SLUG),
    "deployments:modalities": G(viewer=200),
    "deployments:orthanc_users": G(viewer=200),
    "deployments:preview": G(kwargs=SLUG),
    "deployments:push": P(kwargs=SLUG),
    "deployments:revisions": G(viewer=200, kwargs=SLUG),
    "deployments:revision": G(kwargs={**SLUG, "number": "revision.number"}),
    "deployments:rollback": P(kwargs={**SLUG, "number": "revision.number"}),
    "deployments:modality_create": G(kwargs=SLUG),
    "deployments:modality_edit": G(kwargs={**SLUG, "pk": "modality.pk"}),
    "deployments:modality_delete": P(kwargs={**SLUG, "pk": "modality.pk"}),
    "deployments:modality_echo": P(kwargs={**SLUG, "pk": "modality.pk"}),
    "deployments:user_create": G(kwargs=SLUG),
    "deployments:user_edit": G(kwargs={**SLUG, "pk": "orthanc_user.pk"}),
    "deployments:user_rotate": P(admin=200, kwargs={**SLUG, "pk": "orthanc_user.pk"}),
    "deployments:user_delete": P(kwargs={**SLUG, "pk": "orthanc_user.pk"}),
    "deployments:service_rotate": P(kwargs=SLUG),
}
