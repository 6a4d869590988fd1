"""How the web process listens: aiohttp's server, with its own error answers as problem+json.

aiohttp answers some requests before any handler or middleware runs: a request its HTTP
parser refuses (oversized header, bad Content-Length, bad chunk, a Content-Encoding it cannot
decode such as `br`) gets a text/plain 400 from `RequestHandler.handle_error`. The one way in
is that method, so the web process runs a RequestHandler whose handle_error answers with the
same problem+json as everything else (aiohttp offers no setting for it).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import http_exceptions, web, web_protocol, web_request, web_server

from api import body, problems

log = structlog.get_logger()

_STATUS_TITLES = {
    400: "Bad Request",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}


def problem_for(status: int, exc: BaseException | None) -> problems.Problem:
    """The problem for an error aiohttp's protocol met outside any handler."""
    if isinstance(exc, http_exceptions.ContentEncodingError) and "install" in str(exc.message):
        # Raised while reading the headers for an encoding without a decoder here (br, zstd);
        # a body that fails to decode says only the encoding's name, and is the client's 400.
        return body.unsupported_encoding()
    if isinstance(exc, http_exceptions.ContentEncodingError):
        return problems.Problem(
            400,
            "Bad Request",
            "the body could not be read as its headers describe it",
            slug="unreadable-body",
            field="body",
        )
    if isinstance(exc, http_exceptions.LineTooLong):
        return problems.Problem(
            400,
            "Bad Request",
            "a request line or header is too long",
            slug="malformed-request",
            field="headers",
        )
    if isinstance(exc, http_exceptions.HttpProcessingError) and status < 500:
        return problems.Problem(
            status,
            _STATUS_TITLES.get(status, "Bad Request"),
            "the request is not well-formed HTTP/1.1",
            slug="malformed-request",
        )
    return problems.Problem(
        status, _STATUS_TITLES.get(status, "Error"), "an unexpected error occurred"
    )


class ProblemRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering its own errors as problem+json."""

    def handle_error(
        self,
        request: web_request.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """problem+json instead of aiohttp's text/plain; the parser's words go to the log."""
        # aiohttp's own logs the error and refuses when a response was already started.
        super().handle_error(request, status, exc, message)
        log.info("http.refused", status=status, error=message or repr(exc))
        response = problem_for(status, exc).response()
        response.force_close()
        return response


class _Server(web_server.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """web.AppRunner whose connections are ProblemRequestHandlers."""

    async def _make_server(self) -> web_server.Server:
        made = await super()._make_server()
        # The same server, with the connection handler's arguments aiohttp worked out.
        kwargs: dict[str, Any] = made._kwargs
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **kwargs,
        )
