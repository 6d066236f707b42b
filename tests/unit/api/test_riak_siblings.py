"""Sibling answers (riak-http.md section 1.7), not-found answers and returnbody writes."""

from __future__ import annotations

import base64
import email
import re

from dynakv.api.riak_headers import context_etag, vtag
from dynakv.api.riak_mapping import ObjectGet, ObjectPut, render_get, render_put
from dynakv.api.riak_multipart import boundary_for, wants_multipart
from dynakv.core.dvv import VersionVector, encode_context
from dynakv.core.objects import Content
from dynakv.protocol.messages import GetReply, GetRequest, PutReply, PutRequest

NOW = 1_704_067_200_000
CONTEXT = encode_context(VersionVector.from_counters({"a": 2, "b": 1}))
VCLOCK = base64.b64encode(CONTEXT).decode()
ONE = Content(b"one", content_type="text/plain", charset="utf-8", last_modified_ms=NOW)
TWO = Content(
    b'{"n": 2}',
    content_type="application/json",
    usermeta=(("m", "v"),),
    links=(("b2", "k2", "tag"),),
    indexes=(("x_bin", "y"),),
    last_modified_ms=NOW + 2000,
)
TOMB = Content.tombstone(NOW + 1000)
GET = ObjectGet(GetRequest(b"b", b"k"))


def client_split(body: bytes, boundary: str) -> list[email.message.Message]:
    """What riak 2.7.0's codecs/http.py does with a multipart body: split on the delimiter regex, drop
    the first and last pieces, parse each part with email.message_from_string."""
    pieces = re.split(rf"\r?\n--{re.escape(boundary)}(?:--)?\r?\n", body.decode())
    return [email.message_from_string(p) for p in pieces[1:-1]]


def test_multipart_byte_layout_is_exact() -> None:
    response = render_get(GET, GetReply(True, (ONE, TWO), CONTEXT))
    boundary = boundary_for(CONTEXT, [b"one", b'{"n": 2}'])
    assert response.status == 300
    assert response.headers == (
        ("Content-Type", f"multipart/mixed; boundary={boundary}"),
        ("X-Riak-Vclock", VCLOCK),
        ("ETag", f'"{context_etag(CONTEXT)}"'),
        ("Last-Modified", "Mon, 01 Jan 2024 00:00:02 GMT"),  # the newest sibling
        ("Vary", "Accept, Accept-Encoding"),
    )
    expected = (
        f"\r\n--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        'Link: </buckets/b>; rel="up"\r\n'
        f"Etag: {vtag(ONE)}\r\n"
        "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
        "\r\n"
        "one"
        f"\r\n--{boundary}\r\n"
        "Content-Type: application/json\r\n"
        'Link: </buckets/b>; rel="up", </buckets/b2/keys/k2>; riaktag="tag"\r\n'
        f"Etag: {vtag(TWO)}\r\n"
        "Last-Modified: Mon, 01 Jan 2024 00:00:02 GMT\r\n"
        "X-Riak-Meta-m: v\r\n"
        "X-Riak-Index-x_bin: y\r\n"
        "\r\n"
        '{"n": 2}'
        f"\r\n--{boundary}--\r\n"
    )
    assert response.body == expected.encode()


def test_the_client_parser_recovers_every_sibling() -> None:
    response = render_get(GET, GetReply(True, (ONE, TWO, TOMB), CONTEXT))
    boundary = str(response.header("Content-Type")).split("boundary=")[1]
    parts = client_split(response.body, boundary)
    assert [p.get_payload() for p in parts] == ["one", '{"n": 2}', ""]
    assert [p["Etag"] for p in parts] == [vtag(ONE), vtag(TWO), vtag(TOMB)]
    assert parts[1]["X-Riak-Meta-m"] == "v"
    assert parts[2]["X-Riak-Deleted"] == "true"


def test_boundary_avoids_values_that_contain_it() -> None:
    first = boundary_for(CONTEXT, [])
    trap = b"x\r\n--" + first.encode() + b"\r\n"
    second = boundary_for(CONTEXT, [trap])
    assert second != first
    assert b"--" + second.encode() not in trap


def test_text_plain_siblings_when_only_text_is_accepted() -> None:
    op = ObjectGet(GetRequest(b"b", b"k"), multipart=False)
    response = render_get(op, GetReply(True, (ONE, TWO), CONTEXT))
    assert response.status == 300
    assert response.body == f"Siblings:\n{vtag(ONE)}\n{vtag(TWO)}\n".encode()
    assert response.header("Content-Type") == "text/plain"
    assert response.header("X-Riak-Vclock") == VCLOCK


def test_accept_negotiation() -> None:
    cases = {
        None: False,  # as */*: Riak offers text/plain first
        "": False,
        "*/*": False,
        "multipart/mixed, application/json, */*;q=0.5": True,  # the reference client
        "multipart/*": True,
        "text/plain": False,
        "text/plain, */*;q=0": False,
        "text/plain;q=0.5, */*": True,  # */* stands for multipart at 1, above text/plain at 0.5
        "text/plain, */*;q=0.1": False,
        "multipart/mixed;q=0, */*": False,
        "application/json": True,  # neither acceptable: Riak says 406, dynakv sends the values
        "TEXT/PLAIN;q=1.0": False,
        "multipart/mixed;q=bogus, text/plain;q=0.2": False,
    }
    assert {accept: wants_multipart(accept) for accept in cases} == cases


def test_vtag_selects_one_sibling_and_an_unknown_vtag_is_404() -> None:
    reply = GetReply(True, (ONE, TWO), CONTEXT)
    chosen = render_get(ObjectGet(GetRequest(b"b", b"k"), vtag=vtag(TWO)), reply)
    assert (chosen.status, chosen.body, chosen.header("ETag")) == (200, TWO.value, f'"{vtag(TWO)}"')
    missing = render_get(ObjectGet(GetRequest(b"b", b"k"), vtag="nope"), reply)
    assert missing.status == 404


def test_vtags_are_stable_and_distinguish_siblings() -> None:
    assert vtag(ONE) == vtag(
        Content(b"one", content_type="text/plain", charset="utf-8", last_modified_ms=NOW)
    )
    same_value_later = Content(b"one", content_type="text/plain", charset="utf-8", last_modified_ms=NOW + 1)
    assert len({vtag(ONE), vtag(TWO), vtag(same_value_later)}) == 3


def test_not_found_and_tombstone() -> None:
    never = render_get(GET, GetReply(False, (), b""))
    assert (never.status, never.header("X-Riak-Vclock"), never.header("X-Riak-Deleted")) == (404, None, None)
    deleted = render_get(GET, GetReply(False, (), CONTEXT))
    assert deleted.status == 404
    assert (deleted.header("X-Riak-Vclock"), deleted.header("X-Riak-Deleted")) == (VCLOCK, "true")
    assert deleted.header("Content-Type") == "text/plain"


def test_put_answers() -> None:
    def put(return_body: bool) -> ObjectPut:
        return ObjectPut(PutRequest(b"b", b"k", ONE, return_body=return_body))

    assert render_put(put(False), PutReply(CONTEXT)).status == 204
    single = render_put(put(True), PutReply(CONTEXT, (ONE,)))
    assert (single.status, single.body, single.header("X-Riak-Vclock")) == (200, b"one", VCLOCK)
    assert single.header("Last-Modified") == "Mon, 01 Jan 2024 00:00:00 GMT"
    siblings = render_put(put(True), PutReply(CONTEXT, (ONE, TWO)))
    assert siblings.status == 300
    assert str(siblings.header("Content-Type")).startswith("multipart/mixed; boundary=")


def test_stored_control_characters_never_split_a_header() -> None:
    # Metadata may come from the native protocol, which allows anything; a CR/LF must not reach a line.
    evil = Content(
        b"v",
        content_type="text/plain\r\nSet-Cookie: x=1",
        usermeta=(("na me\r\n", "a\r\nb"),),
        last_modified_ms=NOW,
    )
    response = render_get(GET, GetReply(True, (evil,), CONTEXT))
    for name, value in response.headers:
        assert not re.search(r"[\r\n]", name + value)
    assert response.header("X-Riak-Meta-name") == "a  b"
