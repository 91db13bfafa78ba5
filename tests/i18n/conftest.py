"""Spanish tests need the compiled catalog: `make install` builds it; a bare `pytest` run builds it here."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from tests.needs import need
from tests.payments.conftest import localstripe_url, patient, stripe_api  # noqa: F401  (fixtures)

LOCALE = Path(settings.BASE_DIR) / "locale"


@pytest.fixture(scope="session", autouse=True)
def _compiled_catalogs() -> Iterator[None]:
    stale = [po for po in LOCALE.glob("*/LC_MESSAGES/*.po") if not _fresh(po)]
    if stale:
        need("GNU gettext", shutil.which("msgfmt") is not None, "msgfmt is missing (apt-get install gettext)")
        call_command("compilemessages", ignore_patterns=[".venv"], verbosity=0)
        from django.utils.translation import trans_real

        trans_real._translations = {}  # type: ignore[attr-defined]  # catalogs loaded before the build are dropped
        trans_real._active = trans_real.Local()  # type: ignore[attr-defined]
    yield


def _fresh(po: Path) -> bool:
    mo = po.with_suffix(".mo")
    return mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime
