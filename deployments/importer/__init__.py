"""Import an existing Orthanc configuration into a deployment: the inverse of render.py.

Three steps, the first two pure:

1. ``parse_text`` / ``read_path``: Orthanc's JSON (with ``//`` and ``/* */`` comments and trailing
   commas, as Orthanc itself accepts) → one dict per file; ``merge`` → one dict, refusing a key
   defined in two files exactly as Orthanc refuses to start with one.
2. ``plan_import``: that dict → the deployment's settings, its Orthanc users and modalities, the
   keys the portal does not model (kept verbatim in ``extra_config``) and a report.
3. ``apply_import``: one transaction that writes the plan, every change audited.

A key missing from the files gets Orthanc's own default (that of the release the import is for,
see ``deployments.versions``), so adopting a server does not change how it behaves; the report says which defaults were filled in and what the security audit will flag.
"""

from .apply import ImportResult, apply_import
from .parse import ConfigImportError, decode, merge, parse_text, read_path, strip_comments
from .plan import ImportPlan, Line, plan_import

__all__ = [
    "ConfigImportError",
    "ImportPlan",
    "ImportResult",
    "Line",
    "apply_import",
    "decode",
    "import_path",
    "import_texts",
    "merge",
    "parse_text",
    "plan_import",
    "read_path",
    "strip_comments",
]


def import_texts(deployment, texts: dict[str, str], who=None, source=None, label="", version=None) -> ImportResult:
    """Parse, plan and apply. Raises ConfigImportError (one line) and writes nothing on bad input.

    ``version``: the Orthanc release the files are for; by default the deployment's last seen one.
    """
    config, origin, warnings = merge(texts)
    plan = plan_import(config, deployment, origin, version=version)
    for warning in warnings:
        plan.add("warning", warning)
    return apply_import(deployment, plan, who, source=source, label=label or ", ".join(sorted(texts)))


def import_path(deployment, path, who=None, source=None, version=None) -> ImportResult:
    return import_texts(deployment, read_path(path), who, source=source, label=str(path), version=version)
