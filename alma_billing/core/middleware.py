"""Refuse a request whose path, query string, form fields or cookies carry a NUL byte, before any view reads it.

PostgreSQL cannot store NUL in text, so such input used to reach the database and answer 500. No legitimate link or
form has one: the answer is a plain 400.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

FORM_TYPES = ("application/x-www-form-urlencoded",)


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path_info or "%00" in request.META.get("QUERY_STRING", ""):
        return True
    if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
        return True
    if any("\x00" in key or "\x00" in value for key, value in request.COOKIES.items()):
        return True  # the session cookie is looked up in the database
    # Multipart bodies are left alone: parsing them here would make request.body unreadable later.
    if request.method == "POST" and request.content_type in FORM_TYPES:
        return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.POST.lists())
    return False


class RejectNulBytesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_nul(request):
            return HttpResponseBadRequest("Bad request.", content_type="text/plain")
        return self.get_response(request)
