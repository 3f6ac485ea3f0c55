"""What the API reads before a serializer sees it, and how a refusal from deeper down reaches
the client: always a 400 naming the field or the rule, never a 500."""

import json

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from portal.text import JSON_MAX_DEPTH, json_problem


class JSONParser(parsers.JSONParser):
    """DRF's parser with limits: the body's size, its nesting (Python's decoder would otherwise
    overflow its stack), and text no field could store (NUL, lone surrogates)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"The JSON body is larger than {limit // 1024} KiB.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding))
        except RecursionError:
            raise ParseError(f"JSON nested too deeply: at most {JSON_MAX_DEPTH} levels.") from None
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error: {exc}") from None
        problem = json_problem(data)
        if problem:
            where, what = problem
            raise ValidationError({where: [what]})
        return data


def exception_handler(exc, context):
    """Django's ValidationError (a model's ``full_clean`` inside a save) is the client's error too."""
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(as_serializer_error(exc))
    return drf_exception_handler(exc, context)
