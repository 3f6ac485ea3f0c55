"""Views of the deployments app, one module per feature; urls.py imports from each."""
