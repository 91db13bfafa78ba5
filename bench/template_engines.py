"""Benchmark: the verified summary page rendered by Django's template engine and by a Jinja2 port, side by side.

Issue 14's summary / bare target (>= 0.2) is out of reach with Django templates (0.16 after the summary pass); the
profile puts about a third of a summary request in the template engine. This prototype measures what Jinja2 would
change, in-process, on a throwaway `alma_bench_tpl` database seeded like bench/pay_page.py (one verified patient, N
open invoices, one earlier payment):

1. The summary's context is captured from the real view (`payments.views.summary.pay_summary`, through the Django
   test client, in English and in Spanish), then rendered N times by each engine: Django's `render_to_string` of
   `templates/payments/summary.html` exactly as the view's `render()` calls it, and the Jinja2 port in
   `bench/jinja/` through Django's own Jinja2 backend (the same context processors, `csrf_input`, autoescape on,
   `jinja2.ext.i18n` with Django's gettext/ngettext, `url()` = `django.urls.reverse`, the same filters as plain
   functions). Both outputs must carry the same visible text and the same tags and attributes (entities decoded,
   whitespace normalised, CSRF tokens masked): the script stops with a diff if they do not.
2. Full in-process requests (test client, all middleware, session, the 3 SQL statements) of the bare view, the
   summary as it is, and the summary with the view's `render()` swapped for the Jinja2 backend: a measured request,
   not only an estimate.

Rounds are interleaved and each figure is the median of the rounds. It prints times and the ratios: Jinja2 render /
Django render, the Django template share of a summary request, summary / bare in-process with each engine, and the
gunicorn summary / bare ratio scaled by the in-process saving (the assumption is printed with it).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/template_engines.py
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import benchdb
import pay_page

SCRIPT = "template_engines.py"
BENCH_DB = "alma_bench_tpl"
JINJA_DIR = Path(__file__).resolve().parent / "jinja"
TEMPLATE = "payments/summary.html"
LANGUAGES = ("en", "es")
# The gunicorn + wrk ratio after the summary pass (docs/performance.md, 2026-12-07): what the saving is scaled from.
GUNICORN_SUMMARY_BARE = 0.16
TARGET = 0.2
CSRF_VALUE = re.compile(r'((?:name="csrfmiddlewaretoken" value|data-csrf)=")[^"]+')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10, help="open invoices of the verified patient")
    parser.add_argument("--renders", type=int, default=50, help="renders (and requests) per engine per round")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds; each figure is their median")
    parser.add_argument(
        "--gunicorn-ratio",
        type=float,
        default=GUNICORN_SUMMARY_BARE,
        help="summary / bare req/s measured by bench/pay_page.py, to scale by the in-process saving",
    )
    parser.add_argument("--keep-db", action="store_true", help=f"leave the {BENCH_DB} database behind")
    return parser.parse_args()


# --- the two engines --------------------------------------------------------------------------------------------


def jinja_backend() -> Any:
    """Django's own Jinja2 backend over bench/jinja/, set up the way the patient pages would use it."""
    from django.conf import settings
    from django.template.backends.jinja2 import Jinja2
    from django.templatetags.static import static
    from django.urls import reverse
    from django.utils import timezone, translation

    from alma_billing.core.templatetags.money import cents
    from alma_billing.core.templatetags.patient_dates import day
    from payments.templatetags.card_labels import card_label
    from payments.templatetags.patient_messages import patient_message

    backend = Jinja2(
        {
            "NAME": "jinja2",
            "DIRS": [JINJA_DIR],
            "APP_DIRS": False,
            "OPTIONS": {
                "extensions": ["jinja2.ext.i18n"],
                "keep_trailing_newline": True,  # as Django's engine does
                # The context processors Django's engine runs for these pages (settings.TEMPLATES).
                "context_processors": settings.TEMPLATES[0]["OPTIONS"]["context_processors"],
            },
        }
    )
    env = backend.env
    # newstyle: {% trans %} and _() fill their values with % after escaping them, as {% blocktranslate %} does.
    env.install_gettext_callables(translation.gettext, translation.ngettext, newstyle=True)  # type: ignore[attr-defined]

    def url(name: str, *args: Any, **kwargs: Any) -> str:
        return reverse(name, args=args or None, kwargs=kwargs or None)

    def day_filter(value: Any, style: str = "short") -> str:
        return day(timezone.template_localtime(value), style)  # Django's expects_localtime, by hand

    env.globals.update(url=url, static=static, get_language=translation.get_language)
    env.filters.update(cents=cents, day=day_filter, card_label=card_label, patient_message=patient_message)
    return backend


def captured_summaries(client: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The request and context the summary view renders, per language, taken from the view itself."""
    from django.conf import settings

    import payments.views.summary as summary_view

    captured: dict[str, tuple[Any, dict[str, Any]]] = {}
    original = summary_view.render

    def capture(request: Any, template_name: str, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        assert template_name == TEMPLATE, template_name
        captured[request.LANGUAGE_CODE] = (request, context)
        return original(request, template_name, context, *args, **kwargs)

    summary_view.render = capture  # type: ignore[assignment]
    try:
        for language in LANGUAGES:
            client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
            response = client.get("/pay/invoices/")
            if response.status_code != 200:
                raise RuntimeError(f"/pay/invoices/ answered {response.status_code} in {language}")
    finally:
        summary_view.render = original  # type: ignore[assignment]
    if sorted(captured) != sorted(LANGUAGES):
        raise RuntimeError(f"captured the summary in {sorted(captured)}, not {LANGUAGES}")
    return captured


def render_django(request: Any, context: dict[str, Any]) -> str:
    from django.template import loader

    return loader.render_to_string(TEMPLATE, context, request)  # what django.shortcuts.render does


def render_jinja(backend: Any, request: Any, context: dict[str, Any]) -> str:
    return str(backend.get_template(TEMPLATE).render(context, request))


# --- same page? ---------------------------------------------------------------------------------------------------


class _PageParts(HTMLParser):
    """The visible text (one chunk per text node) and the tags with their attributes, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        csrf = tag == "input" and ("name", "csrfmiddlewaretoken") in attrs
        masked = [(k, "<csrf>" if k == "data-csrf" or (csrf and k == "value") else v) for k, v in attrs]
        self.tags.append(f"<{tag} " + " ".join(f"{k}={v!r}" for k, v in masked) + ">")

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        chunk = " ".join(data.split())
        if chunk:
            self.text.append(chunk)


def page_parts(page: str) -> tuple[list[str], list[str]]:
    parser = _PageParts()
    parser.feed(page)
    parser.close()
    return parser.text, parser.tags


def same_page(language: str, django_page: str, jinja_page: str) -> None:
    """Stop with a diff unless both engines produced the same visible text, tags and attributes."""
    django_text, django_tags = page_parts(django_page)
    jinja_text, jinja_tags = page_parts(jinja_page)
    problems = []
    if " ".join(django_text) != " ".join(jinja_text):
        problems.append(("visible text", django_text, jinja_text))
    if django_tags != jinja_tags:
        problems.append(("tags and attributes", django_tags, jinja_tags))
    for what, left, right in problems:
        print(f"{language}: not the same {what} (- Django, + Jinja2):")
        print("\n".join(difflib.unified_diff(left, right, "django", "jinja2", lineterm="", n=2)))
    if problems:
        raise SystemExit(f"{SCRIPT}: the Jinja2 port does not render the same page; fix bench/jinja/ first.")
    masked = [CSRF_VALUE.sub(r"\1", page) for page in (django_page, jinja_page)]
    identical = "byte for byte, CSRF tokens aside" if masked[0] == masked[1] else "the same text and markup"
    print(
        f"{language}: same page from both engines, {identical} ({len(django_text)} text nodes, {len(django_tags)} "
        f"tags; {len(django_page):,} and {len(jinja_page):,} bytes)"
    )


# --- the verified patient, in-process ---------------------------------------------------------------------------


def verified_client(token: str, outbox: Path) -> Any:
    """A test client through the real phone + texted code flow (as bench/pay_page.py does over HTTP)."""
    from django.test import Client

    client = Client(SERVER_NAME="127.0.0.1")
    client.get(f"/pay/{token}/")
    response = client.post(f"/pay/{token}/", {"phone": "(202) 555-0143"})
    if response.status_code != 302:
        raise RuntimeError(f"phone step answered {response.status_code}")
    client.get("/pay/code/")
    texts = sorted(outbox.glob("*.sms.json"))
    code = re.search(r"\b(\d{6})\b", json.loads(texts[-1].read_text())["body"]) if texts else None
    if code is None:
        raise RuntimeError(f"no SMS code in {outbox}")
    response = client.post("/pay/code/", {"code": code.group(1)})
    if response.status_code != 302 or response["Location"] != "/pay/invoices/":
        raise RuntimeError(f"code step answered {response.status_code}")
    return client


class JinjaSummary:
    """Swaps the summary view's render() for the Jinja2 backend while active (the view itself is unchanged)."""

    def __init__(self, backend: Any) -> None:
        import payments.views.summary as summary_view

        self.module = summary_view
        self.original = summary_view.render
        self.backend = backend

    def render(self, request: Any, template_name: str, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        from django.http import HttpResponse

        return HttpResponse(self.backend.get_template(template_name).render(context, request))

    def __enter__(self) -> None:
        self.module.render = self.render

    def __exit__(self, *exc: object) -> None:
        self.module.render = self.original


# --- timing -------------------------------------------------------------------------------------------------------


def ms_per_call(call: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    args = parse_args()
    url = benchdb.bench_database_url(SCRIPT, BENCH_DB, default="postgres://postgres@127.0.0.1:5432/postgres")
    tmp = Path(tempfile.mkdtemp(prefix="alma-bench-tpl-"))
    benchdb.drop_database(url, BENCH_DB, recreate=True)
    try:
        pay_page.django_setup(pay_page.server_environment(url, tmp))  # production settings, DEBUG off
        token = pay_page.seed(args.invoices)
        run(args, token, tmp)
    finally:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
        if not args.keep_db:
            benchdb.drop_database(url, BENCH_DB)
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, token: str, tmp: Path) -> None:
    import jinja2
    from django import get_version
    from django.conf import settings
    from django.utils import translation

    client = verified_client(token, tmp / "outbox")
    backend = jinja_backend()
    captured = captured_summaries(client)
    expect = f"{args.invoices} unpaid invoices" if args.invoices > 1 else "You owe"

    renders: dict[str, Callable[[], object]] = {}
    for language, (request, context) in captured.items():
        with translation.override(language):
            same_page(language, render_django(request, context), render_jinja(backend, request, context))

        def django_call(request: Any = request, context: dict[str, Any] = context, language: str = language) -> str:
            with translation.override(language):
                return render_django(request, context)

        def jinja_call(request: Any = request, context: dict[str, Any] = context, language: str = language) -> str:
            with translation.override(language):
                return render_jinja(backend, request, context)

        renders[f"django {language}"] = django_call
        renders[f"jinja2 {language}"] = jinja_call

    swap = JinjaSummary(backend)

    def request_call(path: str, language: str, *, jinja: bool = False) -> Callable[[], object]:
        def call() -> object:
            client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
            if jinja:
                with swap:
                    response = client.get(path)
            else:
                response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
            return response

        return call

    requests_: dict[str, Callable[[], object]] = {"bare": request_call("/bench/bare/", "en")}
    for language in LANGUAGES:
        requests_[f"summary django {language}"] = request_call("/pay/invoices/", language)
        requests_[f"summary jinja2 {language}"] = request_call("/pay/invoices/", language, jinja=True)
    for name, call in requests_.items():  # each answers the page it should, and warms up
        if name != "bare":
            body = call().content.decode()  # type: ignore[attr-defined]
            if name.endswith(" en") and expect not in body:
                raise RuntimeError(f"{name}: {expect!r} not in the page")
        for _ in range(20):
            call()
    for call in renders.values():
        for _ in range(20):
            call()

    samples: dict[str, list[float]] = {name: [] for name in [*renders, *requests_]}
    order = [*renders.items(), *requests_.items()]
    for round_number in range(args.rounds):  # every other round backwards: no figure always runs first
        for name, call in order if round_number % 2 == 0 else reversed(order):
            samples[name].append(ms_per_call(call, args.renders))
    ms = {name: statistics.median(values) for name, values in samples.items()}
    report(args, ms, samples, jinja2_version=jinja2.__version__, django_version=get_version())


def report(
    args: argparse.Namespace,
    ms: dict[str, float],
    samples: dict[str, list[float]],
    *,
    jinja2_version: str,
    django_version: str,
) -> None:
    load = os.getloadavg()
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load[0]:.1f} {load[1]:.1f} "
        f"{load[2]:.1f}; Django {django_version}, Jinja2 {jinja2_version}; {args.invoices} open invoices; "
        f"{args.renders} calls per figure per round, median of {args.rounds} interleaved rounds (in-process)"
    )
    print(f"\n| {'what':<34} | {'ms per call':>11} | rounds (ms) |")
    print(f"|{'-' * 36}|{'-' * 12}:|-------------|")
    for name, value in ms.items():
        label = name if name.startswith(("summary", "bare")) else f"render only: {name}"
        rounds = ", ".join(f"{v:.2f}" for v in samples[name])
        print(f"| {label:<34} | {value:>11.3f} | {rounds} |")

    # The load on the shared cores swings several-fold between rounds: every ratio is taken within a round (the
    # figures of one round ran back to back), then the median over the rounds.
    rounds = [{name: values[i] for name, values in samples.items()} for i in range(args.rounds)]
    print(f"\n| {'ratio (median over rounds of the ratio within each round)':<72} | {'en':>6} | {'es':>6} |")
    print(f"|{'-' * 74}|{'-' * 7}:|{'-' * 7}:|")
    r = args.gunicorn_ratio

    def server_ms(m: dict[str, float], lang: str) -> float:
        # The per-request work gunicorn adds to both pages, G, such that (bare + G) / (summary + G) = r.
        return max(0.0, (r * m[f"summary django {lang}"] - m["bare"]) / (1 - r))

    ratios: dict[str, Callable[[dict[str, float], str], float]] = {
        "Jinja2 render / Django render (time)": lambda m, lang: m[f"jinja2 {lang}"] / m[f"django {lang}"],
        "Django template share of a summary request": lambda m, lang: m[f"django {lang}"] / m[f"summary django {lang}"],
        "Jinja2 template share of a Jinja2 summary request": (
            lambda m, lang: m[f"jinja2 {lang}"] / m[f"summary jinja2 {lang}"]
        ),
        "summary request, Jinja2 / Django (time, measured)": (
            lambda m, lang: m[f"summary jinja2 {lang}"] / m[f"summary django {lang}"]
        ),
        "summary request, Jinja2 / Django (time, from the render share)": (
            lambda m, lang: (
                (m[f"summary django {lang}"] - m[f"django {lang}"] + m[f"jinja2 {lang}"]) / m[f"summary django {lang}"]
            )
        ),
        "summary / bare in-process (req/s), Django templates": lambda m, lang: m["bare"] / m[f"summary django {lang}"],
        "summary / bare in-process (req/s), Jinja2": lambda m, lang: m["bare"] / m[f"summary jinja2 {lang}"],
        f"summary / bare under gunicorn, from {r}: A, proportional (upper bound)": (
            lambda m, lang: r * m[f"summary django {lang}"] / m[f"summary jinja2 {lang}"]
        ),
        f"summary / bare under gunicorn, from {r}: B, shared server cost": (
            lambda m, lang: (m["bare"] + server_ms(m, lang)) / (m[f"summary jinja2 {lang}"] + server_ms(m, lang))
        ),
    }
    medians: dict[str, dict[str, float]] = {}
    for label, ratio in ratios.items():
        medians[label] = {lang: statistics.median(ratio(m, lang) for m in rounds) for lang in LANGUAGES}
        print(f"| {label:<72} | {medians[label]['en']:>6.2f} | {medians[label]['es']:>6.2f} |")
    g = {lang: statistics.median(server_ms(m, lang) for m in rounds) for lang in LANGUAGES}
    print(
        f"\nA: {r} (bench/pay_page.py's gunicorn summary / bare) x the in-process summary time with Django templates "
        "/ with Jinja2: the whole gunicorn request assumed to shrink by the in-process fraction. B: gunicorn adds "
        "the same G ms to every request (HTTP parsing, the worker loop), G solved from (bare + G) / (summary + G) = "
        f"{r} with the round's in-process times (median G = {g['en']:.1f} ms en, {g['es']:.1f} ms es), then "
        "(bare + G) / (Jinja2 summary + G). B is the likelier; A bounds it from above."
    )
    upper = statistics.mean(medians[f"summary / bare under gunicorn, from {r}: A, proportional (upper bound)"].values())
    likely = statistics.mean(medians[f"summary / bare under gunicorn, from {r}: B, shared server cost"].values())
    if upper < TARGET:
        verdict = "out of reach with Jinja2 alone"
    elif likely < TARGET:
        verdict = "reached only under the upper bound A, not under B"
    else:
        verdict = "within reach with Jinja2"
    print(f"Target summary / bare >= {TARGET}: {verdict} (mean of en and es: A {upper:.2f}, B {likely:.2f}).")


if __name__ == "__main__":
    main()
