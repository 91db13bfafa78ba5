"""Gunicorn's logger with pay-link tokens and query strings taken out of the access and error logs.

bin/web passes `--logger-class alma_billing.gunicorn_logging.RedactingLogger`. The access log's request line, path,
query string and referer (patient pages send a same-origin Referer, i.e. the previous page's full URL), and any
request header or environ atom a custom --access-logformat might use, go through `log_privacy.redact`:
`/pay/<token>/` becomes `/pay/[token]/` and `?anything` becomes `?[query]`. The error log ("Error handling request
/pay/...") gets the same filter. Loaded by gunicorn's master before the application, so it imports no Django.
"""

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from alma_billing.log_privacy import (
    QUERY_PLACEHOLDER,
    JsonFormatter,
    RedactPathsFilter,
    RequestIdFilter,
    current_request_id,
    log_format,
    redact,
)


class RedactingLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # setup() runs again on a configuration reload (HUP): add the filter once.
        if not any(isinstance(f, RedactPathsFilter) for f in self.error_log.filters):
            self.error_log.addFilter(RedactPathsFilter())
        # LOG_FORMAT=json (issue 15): both logs as JSON lines; the access line carries the response's request id.
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, RequestIdFilter) for f in log.filters):
                log.addFilter(RequestIdFilter())
            if log_format() == "json":
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        # The middleware's id is gone once the response is written: take it back from the response header.
        request_id = next(
            (value for name, value in getattr(resp, "headers", []) if str(name).lower() == "x-request-id"), None
        )
        token = current_request_id.set(request_id)
        try:
            super().access(resp, req, environ, request_time)
        finally:
            current_request_id.reset(token)

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
