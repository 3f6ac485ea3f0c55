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

from pathlib import Path

from .apply import ImportResult, apply_import
from .parse import ConfigImportError, decode, lua_scripts, merge, parse_text, read_path, strip_comments
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


def import_texts(
    deployment, texts: dict[str, str], who=None, source=None, label="", version=None, base=None
) -> ImportResult:
    """Parse, plan and apply. Raises ConfigImportError (one line) and writes nothing on bad input.

    ``texts``: the ``*.json`` files, and the Lua scripts they load (``*.lua``, matched by name),
    from which each user's role is read. ``base``: the configuration folder on this host, where
    scripts not given are read. ``version``: the Orthanc release the files are for; by default
    the deployment's last seen one. The import starts an adoption (deployments.adoption) whose
    review shows the report.
    """
    from ..adoption import adoption_record

    scripts = {n: t for n, t in texts.items() if n.endswith(".lua")}
    texts = {n: t for n, t in texts.items() if n not in scripts}
    if not texts:
        raise ConfigImportError("no *.json file: the Lua scripts come with the configuration that loads them")
    config, origin, warnings = merge(texts)
    plan = plan_import(config, deployment, origin, version=version, scripts=lua_scripts(config, base, scripts))
    for warning in warnings:
        plan.add("warning", warning)
    label = label or ", ".join(sorted(texts) + sorted(scripts))
    result = apply_import(deployment, plan, who, source=source, label=label)
    result.adoption = adoption_record(result.deployment, result, who, source=label)
    return result


def import_path(deployment, path, who=None, source=None, version=None) -> ImportResult:
    base = path if Path(path).is_dir() else Path(path).parent
    return import_texts(deployment, read_path(path), who, source=source, label=str(path), version=version, base=base)
