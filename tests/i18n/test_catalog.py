"""Every patient-facing string has a Spanish translation: a new or changed string without one fails here."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.needs import need

ROOT = Path(settings.BASE_DIR)
SKIP = [".venv", ".git", "var", "staticfiles", "test-artifacts", "__pycache__", ".mypy_cache", ".ruff_cache"]


def _gettext_tools() -> None:
    need("GNU gettext", shutil.which("msgattrib") is not None, "msgattrib is missing (apt-get install gettext)")


def test_the_spanish_catalog_has_every_string_translated_and_nothing_fuzzy(tmp_path: Path) -> None:
    """Extract the strings from today's code into a copy of the catalog (as `makemessages` would), then ask
    gettext for anything untranslated or fuzzy (a changed English string becomes fuzzy)."""
    _gettext_tools()
    copy = tmp_path / "src"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIP, "*.mo", "*.pyc", ".pytest_cache", ".hypothesis"))
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "es", "--no-obsolete", "-v0",
         "--settings=alma_billing.settings_test", *[f"--ignore={d}" for d in ("tests", "bench", *SKIP)]],
        cwd=copy, check=True, capture_output=True,
    )  # fmt: skip
    po = copy / "locale" / "es" / "LC_MESSAGES" / "django.po"
    untranslated = _entries("--untranslated", po)
    fuzzy = _entries("--only-fuzzy", po)
    assert not untranslated, "Untranslated in locale/es (run makemessages -l es and translate):\n" + untranslated
    assert not fuzzy, "Fuzzy in locale/es (check the translation, then remove the fuzzy flag):\n" + fuzzy


def test_the_committed_catalog_compiles_and_its_placeholders_match() -> None:
    """msgfmt --check compares %(name)s placeholders; {name} ones (str.format) are compared here."""
    _gettext_tools()
    po = ROOT / "locale" / "es" / "LC_MESSAGES" / "django.po"
    result = subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(po)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for entry in _parse(po.read_text(encoding="utf-8")):
        pairs = [("msgid", "msgstr"), ("msgid", "msgstr[0]"), ("msgid_plural", "msgstr[1]")]
        for source, translated in pairs:
            if source in entry and translated in entry:
                assert _braces(entry[source]) == _braces(entry[translated]), entry


def _braces(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def _parse(text: str) -> list[dict[str, str]]:
    """The entries of a .po file as {"msgid": ..., "msgstr": ...} (continuation lines joined), header left out."""
    entries: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        entry: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d\])?) "(.*)"$', line)
            if match:
                key = match.group(1)
                entry[key] = match.group(2)
            elif line.startswith('"') and key:
                entry[key] += line[1:-1]
        if entry.get("msgid"):
            entries.append(entry)
    return entries


def _entries(flag: str, po: Path) -> str:
    result = subprocess.run(["msgattrib", flag, "--no-obsolete", str(po)], capture_output=True, text=True, check=True)
    # The header entry (msgid "") is not a string to translate.
    blocks = [b for b in result.stdout.split("\n\n") if b.strip() and 'msgid ""\nmsgstr ""\n"' not in b]
    return "\n\n".join(blocks)
