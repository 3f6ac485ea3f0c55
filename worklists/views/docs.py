"""The API's documentation page, rendered on the server from the OpenAPI schema: no script
needed (the Content-Security-Policy forbids inline ones) and nothing fetched from a CDN."""

from django.shortcuts import render
from drf_spectacular.generators import SchemaGenerator

from portal.roles import login_required

METHODS = ("get", "post", "put", "patch", "delete")


def _ref(schema, node):
    while isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node or {}


def _fields(schema, node, prefix=""):
    node = _ref(schema, node)
    required = set(node.get("required", []))
    rows = []
    for name, prop in node.get("properties", {}).items():
        prop = _ref(schema, prop) if "$ref" in prop else prop
        if prop.get("readOnly"):
            continue
        limits = []
        if "maxLength" in prop:
            limits.append(f"at most {prop['maxLength']} characters")
        if prop.get("enum"):
            limits.append("one of " + ", ".join(str(v) for v in prop["enum"] if v))
        if prop.get("format"):
            limits.append(prop["format"])
        rows.append(
            {
                "name": prefix + name,
                "type": prop.get("type", "object"),
                "required": name in required,
                "limits": "; ".join(limits),
                "help": prop.get("description", ""),
            }
        )
        if prop.get("type", "object") == "object" and prop.get("properties"):
            rows.extend(_fields(schema, prop, prefix=f"{prefix}{name}."))
    return rows


@login_required
def api_docs(request):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("description", ""),
                    "id": op.get("operationId", ""),
                    "parameters": [p for p in op.get("parameters", []) if p.get("in") in ("query", "path")],
                    "fields": _fields(schema, body) if body else [],
                }
            )
    return render(request, "worklists/api_docs.html", {"info": schema.get("info", {}), "operations": operations})
