from . import G, P

MATRIX = {
    "deployments:list": G(viewer=200),
    "deployments:create": G(),
    "deployments:detail": G(viewer=200, kwargs={"slug": "deployment.slug"}),
    "deployments:edit": G(kwargs={"slug": "deployment.slug"}),
    "deployments:check": P(kwargs={"slug": "deployment.slug"}),
}
