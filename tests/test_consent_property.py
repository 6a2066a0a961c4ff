"""Property: a photo is returned for a purpose iff consent for it is active at query time.

Random histories of grants (some with expiry), withdrawals (some of all
scopes) and query moments are played into a real vault; the answer of every
public method that returns photos, previews, originals, derivatives,
de-identified results or identifiers, for each purpose, is compared with a
direct reading of the rule: the most recent consent event for that scope at
or before the query time is a grant whose expiry day has not passed.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb

from conftest import FixedClock, jpeg_bytes, passphrase

BASE = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)
SCOPES = wb.SCOPES

event = st.tuples(
    st.sampled_from(["grant", "grant", "withdraw"]),
    st.one_of(st.none(), st.sets(st.sampled_from(SCOPES), min_size=1)),
    st.integers(min_value=0, max_value=60),         # effective, days after BASE
    st.one_of(st.none(), st.integers(min_value=0, max_value=60)),  # expiry, days after BASE
)


def expected_active(history, scope: str, now: datetime) -> bool:
    if scope == "care" and not history:
        return True  # stored with allow_no_consent: care use only
    last = None
    for order, (action, scopes, eff_day, exp_day) in enumerate(history):
        effective = BASE + timedelta(days=eff_day)
        touches = scope in (scopes if scopes is not None else SCOPES)
        if effective <= now and touches:
            if last is None or (effective, order) >= (last[0], last[1]):
                last = (effective, order, action, exp_day)
    if last is None or last[2] != "grant":
        return False
    return last[3] is None or now.date() <= (BASE + timedelta(days=last[3])).date()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    clock = FixedClock(BASE)
    path = tmp_path_factory.mktemp("consent") / "vault"
    vault = wb.init_vault(path, admin="ada", passphrase=passphrase("ada"), clock=clock)
    yield vault, clock, itertools.count(1)
    vault.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(event, min_size=1, max_size=6),
    query_day=st.integers(min_value=0, max_value=70),
    query_hour=st.integers(min_value=0, max_value=23),
)
def test_photo_returned_iff_consent_active(shared, history, query_day, query_hour):
    vault, clock, counter = shared
    n = next(counter)
    patient = f"MRN-P{n:05d}"
    clock.moment = BASE
    for action, scopes, eff_day, exp_day in history:
        effective = BASE + timedelta(days=eff_day)
        if action == "grant":
            expires = (BASE + timedelta(days=exp_day)).date() if exp_day is not None else None
            vault.add_consent(patient, scopes if scopes is not None else SCOPES,
                              expires=expires, effective=effective)
        elif vault._find_patient(patient) is not None:
            vault.withdraw_consent(patient, scopes, effective=effective)
        else:
            # a withdrawal before any record exists is refused (NotFound); the
            # model must ignore it too
            with pytest.raises(wb.NotFound):
                vault.withdraw_consent(patient, scopes, effective=effective)
    applied = [h for i, h in enumerate(history)
               if h[0] == "grant" or any(x[0] == "grant" for x in history[:i])]
    photo = vault.add_photo(jpeg_bytes(100_000 + n, size=(16, 16)), patient=patient,
                            body_site="skin", allow_no_consent=True).photo_id
    blob = vault.put_derivative(photo, "deid_jpeg", b"derivative %d" % n)
    result = SimpleNamespace(data=b"deid %d" % n, regions=[], ext="jpg", width=16, height=16,
                             verified=True, warnings=[])
    vault.store_deid(photo, result, "policy")
    clock.moment = BASE + timedelta(days=query_day, hours=query_hour)
    for scope in SCOPES:
        active = expected_active(applied, scope, clock.moment)
        assert (photo in set(vault.photos(scope)["photo_id"])) == active, (scope, applied)
        with_ids = vault.photos(scope, include_identifiers=True)
        assert (photo in set(with_ids["photo_id"])) == active
        assert (photo in set(vault.exclusions(scope)["photo_id"])) == (not active)
        assert (not vault.derivatives(photo, purpose=scope).empty) == active
        assert (photo in set(vault.deid_results(purpose=scope)["photo_id"])) == active
        reads = [lambda: vault.load_derivative(blob, purpose=scope),
                 lambda: vault.load_previews([photo], purpose=scope),
                 lambda: vault.read_original_file(photo, purpose=scope),
                 lambda: vault.load_original(photo, purpose=scope)]
        for read in reads:
            if active:
                read()
            else:
                with pytest.raises(wb.ConsentError):
                    read()
