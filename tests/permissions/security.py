from . import G

# The security page asks the World's Orthanc (nothing listens on 127.0.0.1:9): it still answers 200.
MATRIX = {
    "deployments:import": G(kwargs={"slug": "deployment.slug"}),
    "deployments:security": G(viewer=200, kwargs={"slug": "deployment.slug"}),
}
