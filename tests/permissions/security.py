from . import G, P

# The security page asks no Orthanc (the live audit's result is stored); viewers may read it,
# only Admins may start the live audit.
MATRIX = {
    "deployments:import": G(kwargs={"slug": "deployment.slug"}),
    "deployments:adoption": G(kwargs={"slug": "deployment.slug"}),
    "deployments:security": G(viewer=200, kwargs={"slug": "deployment.slug"}),
    "deployments:security_audit": P(kwargs={"slug": "deployment.slug"}),
}
