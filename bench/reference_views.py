"""Baseline pages for bench/pay_page.py, and its URLconf: the app's routes plus two bench-only ones.

Served only by the bench's gunicorn (DJANGO_SETTINGS_MODULE=bench.pay_settings sets ROOT_URLCONF to this module);
the app's own URLconf never includes them.

- /bench/bare/: a bare Django view (HttpResponse("ok")) behind the app's full middleware stack.
- /bench/reference/: reads the session, runs 5 primary-key SELECTs and renders a ~2 KB template.
"""

from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import include, path

from invoices.models import Invoice, Patient, Practice, Provider, TherapySession

_ROWS = "\n".join(
    f'    <tr><td class="label">Line {n}</td><td>{{{{ invoice.number }}}}</td><td>{{{{ amount }}}}</td></tr>'
    for n in range(1, 13)
)
REFERENCE_TEMPLATE = engines["django"].from_string(
    """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Reference page · {{ patient.first_name }}</title></head>
<body>
  <header class="top"><span class="brand">Alma</span>
    <span class="muted">Reference page for the benchmark</span></header>
  <main class="page">
  <h1>Hello {{ patient.first_name }} {{ patient.last_name }}</h1>
  <p>{{ provider.display_name }} at {{ practice.name }} saw you on {{ session.date_of_service|date:"M j, Y" }}.</p>
  <p>Session data: {{ seen }}</p>
  <table>
"""
    + _ROWS
    + """
  </table>
  <form method="post" action="/bench/reference/">{% csrf_token %}<button type="submit">Go</button></form>
  </main>
  <footer class="foot muted">Questions about a bill? Contact your provider. This text pads the page to about two
  kilobytes so that the template work is comparable with a small real page of the application.</footer>
</body>
</html>
"""
)


def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def reference(request: HttpRequest) -> HttpResponse:
    """Five SELECTs by primary key (rows 1 of a freshly seeded database) and a 2 KB template, with a session."""
    context = {
        "seen": sorted(request.session.keys()),
        "patient": Patient.objects.get(pk=1),
        "invoice": Invoice.objects.get(pk=1),
        "session": TherapySession.objects.get(pk=1),
        "provider": Provider.objects.get(pk=1),
        "practice": Practice.objects.get(pk=1),
        "amount": "$120.00",
    }
    return HttpResponse(REFERENCE_TEMPLATE.render(context, request))


urlpatterns = [
    path("bench/bare/", bare),
    path("bench/reference/", reference),
    path("", include("alma_billing.urls")),
]
