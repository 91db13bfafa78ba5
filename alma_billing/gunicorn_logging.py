"""Gunicorn's logger with pay-link tokens and query strings taken out of the access and error logs.

bin/web passes `--logger-class alma_billing.gunicorn_logging.RedactingLogger`. The access log's request line, path,
query string and referer (patient pages send a same-origin Referer, i.e. the previous page's full URL), and any
request header or environ atom a custom --access-logformat might use, go through `log_privacy.redact`:
`/pay/<token>/` becomes `/pay/[token]/` and `?anything` becomes `?[query]`. The error log ("Error handling request
/pay/...") gets the same filter. Loaded by gunicorn's master before the application, so it imports no Django.
"""

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from alma_billing.log_privacy import QUERY_PLACEHOLDER, RedactPathsFilter, redact


class RedactingLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # setup() runs again on a configuration reload (HUP): add the filter once.
        if not any(isinstance(f, RedactPathsFilter) for f in self.error_log.filters):
            self.error_log.addFilter(RedactPathsFilter())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if isinstance(value, str):
                atoms[key] = redact(value)
        if atoms.get("q"):
            atoms["q"] = QUERY_PLACEHOLDER[1:]
        for key in ("{query_string}e", "{cookie}i", "{authorization}i", "{stripe-signature}i"):
            if atoms.get(key):
                atoms[key] = "[redacted]"
        return atoms
