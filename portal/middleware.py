import codecs

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import HttpResponseBadRequest
from django.http.multipartparser import MultiPartParserError
from django.utils.cache import patch_cache_control

# Everything from our own origin, nothing inline: the templates carry no inline script or style.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", DEFAULT_CSP)

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", self.policy)
        return response


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every answer of the application: its pages and API answers
    carry patient data and secrets shown once, which no browser or proxy cache may keep.

    Static files keep their own caching: WhiteNoise (production) answers before this runs, and
    ``runserver`` serves them without middleware.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_cache_control(response, no_store=True)
        return response


class FormBodyMiddleware:
    """Reads a POSTed form once, before CSRF and axes do, and answers 400 naming the rule when it
    cannot be read.

    Django refuses a urlencoded body that declares a charset other than UTF-8 (e.g.
    ``charset=latin-1``), but its own 400 page reads ``request.POST`` again and fails the same way:
    every form, the login page included, answered 500. The same holds for too many fields or a
    body over the size limit.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            problem = self._problem(request)
            if problem:
                return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    def _problem(self, request):
        if request.content_type == "application/x-www-form-urlencoded" and request.encoding:
            # Django only keeps a charset Python knows; "utf8" or "UTF_8" are UTF-8 too.
            if codecs.lookup(request.encoding).name != "utf-8":
                return f"Form data must be UTF-8 (the HTML standard's only form encoding); this request declares charset={request.encoding}."
            request.encoding = "utf-8"
        try:
            request.POST  # noqa: B018 (parsed here, once)
        except (BadRequest, SuspiciousOperation, MultiPartParserError) as exc:
            request._mark_post_parse_error()  # later readers see an empty form, not the error again
            if isinstance(exc, TooManyFieldsSent):
                return f"Too many form fields: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}."
            if isinstance(exc, RequestDataTooBig):
                return f"The form data is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024} KiB."
            return f"The form data cannot be read: {exc}"
        return ""


class QueryStringMiddleware:
    """Answers 400 naming the parameter when a query string carries a NUL. No name, ID or slug
    holds one, and PostgreSQL refuses it in any text: every filter that passed it on answered 500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return HttpResponseBadRequest(
                    f"Query parameter {name!r} contains a NUL character (U+0000), which no search can hold.",
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)
