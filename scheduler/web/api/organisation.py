"""The caller's organisation and its API keys."""

from __future__ import annotations

from scheduler import keys, notices
from scheduler.errors import (
    Conflict,
    FieldError,
    ValidationFailed,
)
from scheduler.i18n import LOCALES
from scheduler.orgs import add_key, list_keys, revoke_key
from scheduler.web.api.routing import (
    Call,
    endpoint,
)
from scheduler.web.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    OrganisationOut,
    OrganisationPatch,
)
from scheduler.web.schemas_privacy import NoticeOut, PrivacyIn, PrivacyOut

# --- the organisation ----------------------------------------------------------------------


@endpoint("GET", "/organisation", "The caller's organisation", response=OrganisationOut)
async def get_organisation(call: Call) -> OrganisationOut:
    return OrganisationOut.model_validate(call.org)


@endpoint(
    "PATCH",
    "/organisation",
    "Change the organisation's settings (recording, contact address)",
    body=OrganisationPatch,
    response=OrganisationOut,
    write=True,
    errors=(401, 409, 422),
)
async def patch_organisation(call: Call) -> OrganisationOut:
    changes = call.body.model_dump(exclude_unset=True)
    if changes.get("recording") and not call.request.app[keys.SETTINGS].rooms.recording_allowed:
        raise Conflict("recording is disabled on this server ([rooms] recording_allowed)")
    for name, value in changes.items():
        setattr(call.org, name, value)
    await call.session.flush()
    return OrganisationOut.model_validate(call.org)


# --- the recording notice ------------------------------------------------------------------


def _privacy(call: Call) -> PrivacyOut:
    catalogs = call.request.app[keys.CATALOGS]
    shown = []
    for locale in LOCALES:
        text, own = notices.notice_text(call.org.consent_notices, catalogs, locale)
        shown.append(NoticeOut(language=locale, text=text, own=own, version=notices.version(text)))
    return PrivacyOut(consent_notices=shown)


@endpoint(
    "GET",
    "/organisation/privacy",
    "The recording notice the room pages show, per language, and each text's version",
    response=PrivacyOut,
    errors=(401,),
)
async def get_privacy(call: Call) -> PrivacyOut:
    return _privacy(call)


@endpoint(
    "PUT",
    "/organisation/privacy",
    "Set the organisation's own recording notice per language (a language left out shows "
    "Viva's). Participants who consented to another text are asked again",
    body=PrivacyIn,
    response=PrivacyOut,
    write=True,
    errors=(401, 422),
)
async def put_privacy(call: Call) -> PrivacyOut:
    texts: dict[str, str] = call.body.consent_notices
    unknown = sorted(set(texts) - set(LOCALES))
    if unknown:
        raise ValidationFailed(
            [
                FieldError(f"consent_notices.{lang}", f"one of {', '.join(LOCALES)}")
                for lang in unknown
            ]
        )
    call.org.consent_notices = dict(texts) or None
    await call.session.flush()
    return _privacy(call)


# --- the organisation's API keys -----------------------------------------------------------


@endpoint(
    "POST",
    "/organisation/keys",
    "Create an API key (the key is in this response only; keep it safe)",
    body=ApiKeyIn,
    response=ApiKeyCreated,
    status=201,
    write=True,
    errors=(401, 422),
)
async def create_key(call: Call) -> ApiKeyCreated:
    now = call.request.app[keys.CLOCK].now()
    row, key = await add_key(call.session, call.org.id, name=call.body.name, now=now)
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@endpoint(
    "GET",
    "/organisation/keys",
    "List the organisation's API keys (never the keys themselves)",
    response=ApiKeyList,
    errors=(401,),
)
async def get_keys(call: Call) -> ApiKeyList:
    rows = await list_keys(call.session, call.org.id)
    return ApiKeyList(keys=[ApiKeyOut.model_validate(k) for k in rows])


@endpoint(
    "DELETE",
    "/organisation/keys/{id}",
    "Revoke an API key at once (a key cannot revoke itself while it is the last active one)",
    status=204,
    write=True,
    errors=(401, 404, 409),
)
async def delete_key(call: Call) -> None:
    now = call.request.app[keys.CLOCK].now()
    await revoke_key(call.session, call.org.id, call.path_id(), now=now, acting_key_id=call.key_id)
