"""How the fuzzer reads a page's form, encodes a body byte by byte, and judges an answer."""

import html
import json
import re
from html.parser import HTMLParser
from urllib.parse import quote_from_bytes

from .values import encode

BOUNDARY = "FuzzBoundary7MA4YWxkTrZu0gW"
# Statuses about access, not about the input: they need not name a field.
ACCESS_STATUSES = {401, 403, 404, 405}
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "django/core/handlers/")


class FormFields(HTMLParser):
    """The named inputs of a page and the value each would submit as the page stands
    (None: not submitted, e.g. an unticked checkbox)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.values, self.files = {}, []
        self._select = self._textarea = None
        self.feed(page)
        self.values.pop("csrfmiddlewaretoken", None)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind == "file":
                self.files.append(name)
            elif kind in ("checkbox", "radio"):
                if "checked" in a or name not in self.values:
                    self.values[name] = (a.get("value") or "on") if "checked" in a else None
            elif kind not in ("submit", "button", "image", "reset"):
                self.values[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.values[name] = None
        elif tag == "option" and self._select:
            if self.values[self._select] is None or "selected" in a:
                self.values[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _pairs(fields: dict):
    for name, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            if one is not None:
                yield name, one


def content_type(base: str, how) -> str:
    declared = how[2]
    return f"{base}; charset={declared}" if declared else base


def urlencoded(fields: dict, how) -> tuple[bytes, str]:
    body = "&".join(f"{quote_from_bytes(encode(k, how))}={quote_from_bytes(encode(v, how))}" for k, v in _pairs(fields))
    return body.encode("ascii"), content_type("application/x-www-form-urlencoded", how)


def multipart(fields: dict, files: list, how) -> tuple[bytes, str]:
    """A multipart body built by hand: Django's own encoder refuses the bytes we want to send."""
    lines = []
    for name, value in _pairs(fields):
        lines += [f"--{BOUNDARY}".encode(), f'Content-Disposition: form-data; name="{name}"'.encode(), b""]
        lines.append(encode(value, how))
    for name, filename, content in files:
        disposition = f'Content-Disposition: form-data; name="{name}"; filename="'.encode()
        lines += [f"--{BOUNDARY}".encode(), disposition + encode(filename, how) + b'"']
        lines += [b"Content-Type: application/octet-stream", b"", content]
    lines += [f"--{BOUNDARY}--".encode(), b""]
    return b"\r\n".join(lines), content_type(f"multipart/form-data; boundary={BOUNDARY}", how)


def json_body(value, how, ascii_only: bool) -> bytes:
    """JSON text: ASCII with \\uXXXX escapes (lone surrogates survive as escapes), or raw
    characters in the drawn encoding (lone surrogates become invalid UTF-8)."""
    if isinstance(value, str) and value.startswith(("[", "{")):  # already JSON text (deep nesting)
        text = value
    else:
        text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return encode(text, how)


def query_string(pairs, raw: bool) -> str:
    """A WSGI QUERY_STRING: percent-encoded UTF-8 (lone surrogates as invalid bytes), or raw bytes
    as a server hands them over (latin-1 decoded)."""
    parts = []
    for name, value in pairs:
        data = value.encode("utf-8", "surrogatepass")
        parts.append(f"{name}={data.decode('latin-1') if raw else quote_from_bytes(data)}")
    return "&".join(parts)


def traceback_in(response) -> bool:
    body = response.content.decode("utf-8", "replace")
    return any(marker in body for marker in TRACEBACK_MARKERS)


def explains(response, names) -> bool:
    """A 4xx names a field it was sent, or states a rule in words (not only 'Bad Request')."""
    body = response.content.decode("utf-8", "replace")
    if any(name and re.search(rf"\b{re.escape(name)}\b", body) for name in names):
        return True
    text = html.unescape(re.sub(r"<[^>]+>", " ", body)).replace(response.reason_phrase, " ")
    return len(re.findall(r"[^\W\d_]{2,}", text)) >= 3


def describe(role, method, path, content_type_, body: bytes, response=None) -> str:
    lines = [
        f"{role} {method} {path[:300]!r} → {response.status_code if response else 'raised'}",
        f"Content-Type: {content_type_!r}",
        f"body ({len(body)} bytes): {body[:300]!r}",
    ]
    if response is None:
        return "\n".join(lines)
    lines.append(f"answer: {response.content[:300]!r}")
    exc_info = getattr(response, "exc_info", None)
    if exc_info:
        import traceback

        lines += traceback.format_exception(*exc_info)[-6:]
    return "\n".join(lines)
