"""The SOAP 1.1 adapter, wire-compatible with the model product's Message Center (SPEC §3.2).

``POST /nl/jsp/soaprouter.jsp`` serves ``nms:rtEvent`` and ``nms:batchEvent``
(PushEvent, PushEvents) and ``xtk:session`` (Logon, Logoff); the service is
picked by the ``SOAPAction`` header or, without one, by the namespace of the
body element. Every failure is a SOAP Fault whose ``detail`` says exactly what
was wrong; no event is stored unless all of a request's events are valid.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import cast
from xml.sax.saxutils import escape, quoteattr

import structlog
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from msgcenter.auth.authenticator import Authenticator, identify
from msgcenter.auth.zones import Client
from msgcenter.errors import (
    AuthenticationError,
    InvalidEventError,
    InvalidInputError,
    MsgcenterError,
    NotFoundError,
    PermissionDeniedError,
    SoapVersionMismatchError,
    StoreUnavailableError,
    UnknownOperationError,
)
from msgcenter.events.model import SOAP_ATTRIBUTE_FIELDS, CtxFormat, NewEvent, Queue
from msgcenter.events.validation import validate_event
from msgcenter.events.xml import parse_document
from msgcenter.intake.body import read_body
from msgcenter.intake.service import IntakeService
from msgcenter.monitoring import metrics
from msgcenter.operators import Operator, Right
from msgcenter.web.access import client_of
from msgcenter.web.problems import STORE_UNAVAILABLE, server_errors

log = structlog.get_logger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SERVICE_NAMESPACES = {
    "urn:nms:rtEvent": "nms:rtEvent",
    "urn:nms:batchEvent": "nms:batchEvent",
    "urn:xtk:session": "xtk:session",
}
QUEUES = {"nms:rtEvent": Queue.RT, "nms:batchEvent": Queue.BATCH}
#: SOAP attribute names of the model product -> field names of the validator
ATTRIBUTE_FIELDS = SOAP_ATTRIBUTE_FIELDS
SOAP_ATTRIBUTES = {field: attribute for attribute, field in ATTRIBUTE_FIELDS.items()}
#: bodies larger than this are parsed, and their events read, off the event loop
THREAD_PARSE_BYTES = 256 * 1024
WSDL_SCHEMAS = {
    "nms:rtEvent": "nms_rtEvent.wsdl",
    "nms:batchEvent": "nms_batchEvent.wsdl",
    "xtk:session": "xtk_session.wsdl",
}

ENVELOPE = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    '<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:ns="{ns}" '
    'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">\n'
    "<SOAP-ENV:Body>\n{body}</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
)
RESPONSE = (
    '<urn:{method}Response xmlns:urn="{ns}" '
    'SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">\n{content}'
    "</urn:{method}Response>\n"
)
XML_MEDIA_TYPE = "text/xml; charset=utf-8"
#: RFC 3902: application/soap+xml carries the action as a parameter of the media type
_CONTENT_TYPE_ACTION = re.compile(r';\s*action\s*=\s*"?([^";]*)"?', re.IGNORECASE)


@dataclass(slots=True)
class SoapCall:
    """What a request asks for: the service (``nms:rtEvent``), the method and its element."""

    service: str
    method: str
    element: etree._Element
    #: the request body's size in bytes (large requests are worked on off the event loop)
    size: int

    def param(self, name: str) -> etree._Element | None:
        """The parameter element ``name`` (qualified in the service namespace, or not)."""
        found = self.element.find(f"{{urn:{self.service}}}{name}")
        return found if found is not None else self.element.find(name)

    def text(self, name: str) -> str:
        """The text of parameter ``name`` ("" when absent)."""
        found = self.param(name)
        return (found.text or "").strip() if found is not None else ""


class SoapRouter:
    """The ``soaprouter.jsp`` endpoint and the WSDL documents."""

    def __init__(self, intake: IntakeService, authenticator: Authenticator) -> None:
        self._intake = intake
        self._auth = authenticator
        self._wsdl = {
            schema: resources.files("msgcenter.intake").joinpath("wsdl", name).read_text("utf-8")
            for schema, name in WSDL_SCHEMAS.items()
        }

    async def wsdl(self, request: Request) -> Response:
        """``GET /nl/jsp/schemawsdl.jsp?schema=nms:rtEvent``: the WSDL of one service."""
        schema = request.query_params.get("schema", "")
        document = self._wsdl.get(schema)
        if document is None:
            known = ", ".join(sorted(self._wsdl))
            return Response(
                f"unknown schema {schema!r}; known: {known}\n",
                status_code=404,
                media_type="text/plain",
            )
        location = str(request.url_for("soap_router"))
        return Response(
            document.replace("{{location}}", escape(location)), media_type=XML_MEDIA_TYPE
        )

    async def route(self, request: Request) -> Response:
        """``POST /nl/jsp/soaprouter.jsp``: one SOAP call, answered with a response or a Fault."""
        started = time.perf_counter()
        service = "unknown"
        try:
            call = await self._read_call(request)
            service = call.service
            body = await self._dispatch(call, request)
            status, outcome = 200, "ok"
        except MsgcenterError as exc:
            body, status = _fault(exc), 500
            if _is_client_error(exc):
                outcome = "client_error"
                log.info(
                    "soap fault",
                    action="soap.fault",
                    service=service,
                    code=exc.code,
                    detail=exc.detail,
                )
            else:
                outcome = "server_error"
                server_errors.note(exc.code, request.url.path, exc.detail)
        except Exception:
            log.exception("soap call failed", action="soap.error", service=service)
            body, status, outcome = _server_fault(), 500, "server_error"
        metrics.record_intake_request("soap", outcome, time.perf_counter() - started)
        ns = f"urn:{service}" if service in QUEUES or service == "xtk:session" else SOAP_ENV
        return Response(
            ENVELOPE.format(ns=ns, body=body), status_code=status, media_type=XML_MEDIA_TYPE
        )

    async def _read_call(self, request: Request) -> SoapCall:
        limits = self._intake.settings
        data = await read_body(request, limits.max_request_bytes)
        parse = partial(
            parse_document,
            data,
            max_depth=limits.max_xml_depth,
            max_attributes=limits.max_xml_attributes,
            max_namespaces=limits.max_xml_namespaces,
        )
        root = await asyncio.to_thread(parse) if len(data) > THREAD_PARSE_BYTES else parse()
        if root.tag == f"{{{SOAP_12_ENV}}}Envelope":
            # SOAP 1.2, appendix A: a SOAP 1.1 node answers a 1.2 envelope with a 1.1
            # VersionMismatch fault
            raise SoapVersionMismatchError(
                "SOAP 1.2 is not supported",
                detail=f"the envelope is in namespace {SOAP_12_ENV}; this server speaks "
                f"SOAP 1.1 ({SOAP_ENV}), as the model product does",
            )
        if root.tag != f"{{{SOAP_ENV}}}Envelope":
            raise InvalidInputError(
                "not a SOAP 1.1 envelope",
                detail=f"the root element is {root.tag}; expected {{{SOAP_ENV}}}Envelope",
            )
        body = root.find(f"{{{SOAP_ENV}}}Body")
        operation = None if body is None else next(body.iterchildren(etree.Element), None)
        if operation is None:
            raise InvalidInputError("empty SOAP body", detail="the SOAP Body holds no call element")
        qname = etree.QName(operation)
        service = SERVICE_NAMESPACES.get(qname.namespace or "")
        action = _soap_action(request)
        if action:
            action_service, _, action_method = action.partition("#")
            if action_service not in QUEUES and action_service != "xtk:session":
                raise UnknownOperationError(
                    f"unknown service {action_service!r}",
                    detail=f"SOAPAction {action!r} names no service of this server "
                    "(nms:rtEvent, nms:batchEvent, xtk:session)",
                )
            if (
                service is not None
                and service != action_service
                or action_method != qname.localname
            ):
                raise InvalidInputError(
                    "SOAPAction does not match the body",
                    detail=f"SOAPAction {action!r} but the body calls {qname.localname} "
                    f"in namespace {qname.namespace!r}",
                )
            service = action_service
        if service is None:
            raise UnknownOperationError(
                "unknown service",
                detail=f"body element namespace {qname.namespace!r} names no service "
                "(urn:nms:rtEvent, urn:nms:batchEvent, urn:xtk:session) and no SOAPAction header was sent",
            )
        return SoapCall(service, qname.localname, operation, len(data))

    async def _dispatch(self, call: SoapCall, request: Request) -> str:
        client = client_of(request)
        handlers = {
            ("xtk:session", "Logon"): self._logon,
            ("xtk:session", "Logoff"): self._logoff,
        }
        if call.service in QUEUES:
            handlers[(call.service, "PushEvent")] = self._push_event
            handlers[(call.service, "PushEvents")] = self._push_events
        handler = handlers.get((call.service, call.method))
        if handler is None:
            methods = sorted(m for s, m in handlers if s == call.service)
            raise UnknownOperationError(
                f"unknown method {call.service}#{call.method}",
                detail=f"{call.service} has no method {call.method}; it offers {', '.join(methods)}",
            )
        return await handler(call, request, client)

    async def _pusher(self, call: SoapCall, request: Request, client: Client) -> Operator:
        """The caller, who must hold ``mc_push``: an ``Authorization: Bearer`` token (a technical account's access token
        or a Logon session token, with an empty or absent ``sessiontoken``), else the
        ``sessiontoken`` (or the ``__sessiontoken`` cookie, or ``X-Security-Token``)."""
        token = call.text("sessiontoken") or request.cookies.get("__sessiontoken", "")
        security = request.headers.get("x-security-token", "")
        if not token and security.startswith("@"):
            token = security[1:]
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        if bearer and token and token != bearer:
            raise AuthenticationError(
                "two credentials: the Authorization header's Bearer token and the "
                "sessiontoken differ; send one of them (an empty sessiontoken with Bearer)"
            )
        if bearer:
            operator = await identify(partial(self._auth.bearer, bearer, client))
        else:
            operator = await identify(partial(self._auth.session_token, token, client))
        # before any work on the events: a caller without the right costs nothing more
        operator.require(Right.MC_PUSH)
        return operator

    async def _push_event(self, call: SoapCall, request: Request, client: Client) -> str:
        operator = await self._pusher(call, request, client)
        queue = QUEUES[call.service]
        holder = call.param("domEvent")
        element = None if holder is None else next(holder.iterchildren(etree.Element), None)
        if element is None:
            raise InvalidInputError(
                "no event", detail=f"domEvent must hold one <{queue.soap_element}> element"
            )
        read = partial(self._event, element, queue, operator, f"urn:{call.service}")
        event = await asyncio.to_thread(read) if call.size > THREAD_PARSE_BYTES else read()
        (event_id,) = (await self._intake.push(queue, [event], operator)).ids
        return _response(call, f'<urn:plId xsi:type="xsd:long">{event_id}</urn:plId>\n')

    async def _push_events(self, call: SoapCall, request: Request, client: Client) -> str:
        operator = await self._pusher(call, request, client)
        queue = QUEUES[call.service]
        holder = call.param("domEventCollection")
        wrapper = None if holder is None else next(holder.iterchildren(etree.Element), None)
        if wrapper is None:
            raise InvalidInputError(
                "no events",
                detail=f"domEventCollection must hold one wrapper element around <{queue.soap_element}> elements",
            )
        read = partial(self._events, wrapper, queue, operator, f"urn:{call.service}")
        events = await asyncio.to_thread(read) if call.size > THREAD_PARSE_BYTES else read()
        if not events:
            raise InvalidInputError("no events", detail="the event collection is empty")
        ids = (await self._intake.push(queue, events, operator)).ids
        return _response(
            call, "".join(f'<urn:plId xsi:type="xsd:long">{i}</urn:plId>\n' for i in ids)
        )

    def _events(
        self, wrapper: etree._Element, queue: Queue, operator: Operator, namespace: str
    ) -> list[NewEvent]:
        """The events of a PushEvents collection, in order."""
        events = []
        for position, element in enumerate(wrapper.iterchildren(etree.Element), start=1):
            try:
                events.append(self._event(element, queue, operator, namespace))
            except InvalidEventError as exc:
                raise exc.at_position(position) from None
        return events

    def _event(
        self, element: etree._Element, queue: Queue, operator: Operator, namespace: str
    ) -> NewEvent:
        """One event element; it and its ``ctx`` and ``mobileApp`` are read unqualified or in
        the service's ``namespace`` alike (clients that set a default namespace on the call
        rarely reset it), and the ctx is stored the same either way."""
        if _local_name(element, namespace) != queue.soap_element:
            raise InvalidEventError(
                "element", f"expected <{queue.soap_element}>, found <{etree.QName(element).text}>"
            )
        # lxml gives attribute names and values as str (its stubs also allow bytes)
        attributes = cast(Mapping[str, str], element.attrib)
        named = {ATTRIBUTE_FIELDS.get(k, k): v for k, v in attributes.items()}
        size = sum(len(k) + len(v.encode()) for k, v in named.items())
        fields: dict[str, str | None] = dict(named)
        ctx = None
        for child in element.iterchildren(etree.Element):
            name = _local_name(child, namespace)
            if name == "ctx":
                serialised = etree.tostring(
                    _unqualified(child, namespace), method="c14n", exclusive=True
                )
                ctx = serialised.decode()
                size += len(serialised)
            elif name == "mobileApp":
                fields["mobile_app_uuid"] = child.get("uuid")
        limit = self._intake.settings.max_event_bytes
        if size > limit:
            raise InvalidEventError(
                "size", f"the event is {size} bytes; at most {limit} are accepted"
            )
        key = fields.get("correlation_id") if operator.correlation_idempotency else None
        try:
            return validate_event(fields, ctx, CtxFormat.XML, idempotency_key=key)
        except InvalidEventError as exc:
            # Name the attribute as the caller wrote it (emailFormat, not email_format).
            raise InvalidEventError(SOAP_ATTRIBUTES.get(exc.field, exc.field), exc.reason) from None

    async def _logon(self, call: SoapCall, request: Request, client: Client) -> str:
        login, password = call.text("strLogin"), call.text("strPassword")
        if not login:
            raise InvalidInputError("no login", detail="Logon needs strLogin")
        token, operator, expires = await asyncio.to_thread(
            self._auth.logon, login, password, client
        )
        info = (
            f'<sessionInfo><serverInfo productName="msgcenter"/>'
            f"<userInfo login={quoteattr(operator.login)} "
            f"rights={quoteattr(','.join(sorted(operator.rights)))} "
            f"folder={quoteattr(operator.folder or '')} "
            f"sessionExpires={quoteattr(expires.isoformat())}/></sessionInfo>"
        )
        return _response(
            call,
            f'<urn:pstrSessionToken xsi:type="xsd:string">{escape(token)}</urn:pstrSessionToken>\n'
            f'<urn:pSessionInfo xsi:type="ns:Element">{info}</urn:pSessionInfo>\n'
            f'<urn:pstrSecurityToken xsi:type="xsd:string">@{escape(token)}</urn:pstrSecurityToken>\n',
        )

    async def _logoff(self, call: SoapCall, request: Request, client: Client) -> str:
        token = call.text("sessiontoken") or request.cookies.get("__sessiontoken", "")
        if not token:
            raise InvalidInputError(
                "no session token", detail="Logoff needs the sessiontoken to end"
            )
        await asyncio.to_thread(self._auth.logoff, token)
        return _response(call, "")


def _soap_action(request: Request) -> str:
    """The SOAPAction header, or the ``action`` parameter of an ``application/soap+xml``
    Content-Type (which clients of technical accounts send around a SOAP 1.1 envelope)."""
    action = request.headers.get("soapaction", "").strip().strip('"')
    if action:
        return action
    found = _CONTENT_TYPE_ACTION.search(request.headers.get("content-type", ""))
    return found.group(1).strip() if found else ""


def _local_name(element: etree._Element, namespace: str) -> str | None:
    """The element's name when it is unqualified or in ``namespace``; else None."""
    name = etree.QName(element)
    return name.localname if name.namespace in (None, namespace) else None


def _unqualified(ctx: etree._Element, namespace: str) -> etree._Element:
    """``ctx`` with its elements in ``namespace`` taken out of it (a copy, when any is)."""
    prefix = f"{{{namespace}}}"
    if not any(e.tag.startswith(prefix) for e in ctx.iter(etree.Element)):
        return ctx
    copied = copy.deepcopy(ctx)
    for element in copied.iter(etree.Element):
        if element.tag.startswith(prefix):
            element.tag = element.tag[len(prefix) :]
    etree.cleanup_namespaces(copied)
    return copied


def _response(call: SoapCall, content: str) -> str:
    return RESPONSE.format(method=call.method, ns=f"urn:{call.service}", content=content)


def _is_client_error(exc: MsgcenterError) -> bool:
    return isinstance(
        exc, InvalidInputError | AuthenticationError | PermissionDeniedError | NotFoundError
    )


def _fault(exc: MsgcenterError) -> str:
    if isinstance(exc, SoapVersionMismatchError):
        code = "SOAP-ENV:VersionMismatch"
    else:
        code = "SOAP-ENV:Client" if _is_client_error(exc) else "SOAP-ENV:Server"
    detail = STORE_UNAVAILABLE if isinstance(exc, StoreUnavailableError) else exc.detail
    return (
        f"<SOAP-ENV:Fault>\n<faultcode>{code}</faultcode>\n"
        f"<faultstring>{escape(exc.message)}</faultstring>\n"
        f"<detail>{escape(detail)}</detail>\n</SOAP-ENV:Fault>\n"
    )


def _server_fault() -> str:
    return (
        "<SOAP-ENV:Fault>\n<faultcode>SOAP-ENV:Server</faultcode>\n"
        "<faultstring>internal error</faultstring>\n"
        "<detail>the server failed to handle the call; the error is in its log</detail>\n"
        "</SOAP-ENV:Fault>\n"
    )
