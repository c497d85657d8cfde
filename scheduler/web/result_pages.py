"""The candidate's results page and PDFs behind the results link, and /v/{code}, where
anyone checks a certificate (scheduler.results, scheduler.certificates).

The results link is kind RESULTS of rooms.tokens (revoked by rotating the result's nonce);
a link or code that finds nothing counts as a failed look-up (scheduler.web.throttle guards
/results/ and /v/). The verification page shows the holder's name, the exam language, the
level and the date, and nothing else; an unknown code, a revoked one and a valid one each
cost one indexed look-up and one primary-key read, and render the same template.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import certificates, keys, results
from scheduler.certificates import Part, ResultDocument
from scheduler.i18n import negotiate
from scheduler.models import Booking, Candidate, Organisation, Result
from scheduler.web.calendar_view import read_choices
from scheduler.web.pages import error_page, render
from scheduler.web.throttle import lookup_failed

_NOBODY = uuid.UUID(int=0)


def _local_date(instant: datetime, tz: str) -> Any:
    return instant.astimezone(ZoneInfo(tz)).date()


async def _document(
    request: web.Request, session: AsyncSession, result: Result
) -> tuple[ResultDocument, Candidate, Organisation]:
    candidate = await session.get(Candidate, result.candidate_id)
    org = await session.get(Organisation, result.organisation_id)
    assert candidate is not None and org is not None  # foreign keys
    booking = await session.get(Booking, result.booking_id) if result.booking_id else None
    code = request.app[keys.CODES].code(result.id)
    issued = results.issued_at(result)
    doc = ResultDocument(
        locale=candidate.locale,
        organisation=org.name,
        candidate=candidate.name,
        exam_language=candidate.language,
        interview_on=_local_date(booking.start_at, candidate.timezone) if booking else None,
        issued_on=_local_date(issued, candidate.timezone),
        issued_at=issued,
        oral_level=result.oral_level,
        parts=[Part(p["name"], p["level"], p.get("score")) for p in result.parts],
        overall_level=result.overall_level,
        target_level=result.target_level,
        target_reached=result.target_reached,
        code=code,
        verify_url=request.app[keys.RESULT_MAILER].verify_url(code),
    )
    return doc, candidate, org


async def _opened(request: web.Request, session: AsyncSession) -> Result:
    result = await results.resolve_link(
        session, request.app[keys.LINKS].signer, request.match_info["token"]
    )
    if result is None:
        await lookup_failed()
        raise web.HTTPNotFound()
    candidate = await session.get(Candidate, result.candidate_id)
    if candidate is None or candidate.erased_at is not None:
        raise web.HTTPNotFound()  # erased on request (scheduler.privacy): nothing to show
    return result


def _not_found(request: web.Request) -> web.Response:
    return error_page(request, 404, "not_found")


async def results_page(request: web.Request) -> web.Response:
    async with request.app[keys.DB].read() as session:
        try:
            result = await _opened(request, session)
        except web.HTTPNotFound:
            return _not_found(request)
        doc, candidate, org = await _document(request, session, result)
    reader = read_choices(request.query, candidate.locale, candidate.timezone)
    token = request.match_info["token"]
    return render(
        request,
        "results.html",
        reader,
        {
            "org": org,
            "doc": doc,
            "language": certificates.language_name(doc.exam_language, reader.locale),
            "scores": [
                None if p.score is None else certificates.score_text(p.score, reader.locale)
                for p in doc.parts
            ],
            "interview_on": (
                certificates.long_date(doc.interview_on, reader.locale)
                if doc.interview_on
                else None
            ),
            "issued_on": certificates.long_date(doc.issued_on, reader.locale),
            "revoked_on": (
                certificates.long_date(_local_date(result.revoked_at, reader.tz), reader.locale)
                if result.revoked_at
                else None
            ),
            "statement_url": f"/results/{token}/statement.pdf",
            "certificate_url": (
                f"/results/{token}/certificate.pdf"
                if result.target_reached and result.revoked_at is None
                else None
            ),
        },
    )


async def _pdf(request: web.Request, which: str) -> web.Response:
    async with request.app[keys.DB].read() as session:
        try:
            result = await _opened(request, session)
        except web.HTTPNotFound:
            return _not_found(request)
        doc, candidate, _ = await _document(request, session, result)
    translations = request.app[keys.CATALOGS].get(candidate.locale)
    if which == "certificate":
        if not result.target_reached or result.revoked_at is not None:
            return _not_found(request)
        body = certificates.certificate(doc, translations)
    else:
        body = certificates.statement(doc, translations)
    return web.Response(
        body=body,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{which}.pdf"'},
    )


async def statement_pdf(request: web.Request) -> web.Response:
    return await _pdf(request, "statement")


async def certificate_pdf(request: web.Request) -> web.Response:
    return await _pdf(request, "certificate")


async def verify_page(request: web.Request) -> web.Response:
    """Genuine, revoked or unknown: the same work each way (see the module's docstring)."""
    reader = read_choices(request.query, negotiate(request.headers.get("Accept-Language")), "UTC")
    async with request.app[keys.DB].read() as session:
        result = await results.find_by_code(session, request.match_info["code"])
        candidate = await session.get(
            Candidate, result.candidate_id if result is not None else _NOBODY
        )
    context: dict[str, Any] = {"state": "unknown"}
    if result is None or candidate is None or candidate.erased_at is not None:
        await lookup_failed()
    elif result.revoked_at is not None:
        day = _local_date(result.revoked_at, candidate.timezone)
        context = {"state": "revoked", "revoked_on": certificates.long_date(day, reader.locale)}
    else:
        day = _local_date(results.issued_at(result), candidate.timezone)
        context = {
            "state": "genuine",
            "holder": candidate.name,
            "language": certificates.language_name(candidate.language, reader.locale),
            "level": result.overall_level,
            "issued_on": certificates.long_date(day, reader.locale),
        }
    status = 404 if context["state"] == "unknown" else 200
    return render(request, "verify.html", reader, context, status=status)


async def verify_form(request: web.Request) -> web.Response:
    """Where a code is typed: /v?code=… goes to /v/{code}; without one, the form."""
    reader = read_choices(request.query, negotiate(request.headers.get("Accept-Language")), "UTC")
    typed = request.query.get("code", "").strip()
    if typed:
        target = request.app.router["verify"].url_for(code=typed[:64])
        raise web.HTTPSeeOther(str(target.with_query(reader.carry) if reader.carry else target))
    return render(request, "verify.html", reader, {"state": "ask"})


def setup(app: web.Application) -> None:
    app.router.add_get("/results/{token}", results_page)
    app.router.add_get("/results/{token}/statement.pdf", statement_pdf)
    app.router.add_get("/results/{token}/certificate.pdf", certificate_pdf)
    app.router.add_get("/v", verify_form)
    app.router.add_get("/v/{code}", verify_page, name="verify")
