"""`dynakv get|put|delete`: one request through the native client, for people and shell scripts.

Every sibling is printed (a value as text when it is UTF-8, else base64), followed by the context to
pass back with `--context`, so resolving siblings from the shell is: get, pick, put with the context.
Failures are one line on stderr and an exit code per kind, so a script can tell "not there" from
"could not ask".
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from dynakv.client import (
    BadRequest,
    Client,
    ConnectionFailed,
    ConnectionLost,
    DynakvClientError,
    Overloaded,
    ProtocolError,
    Sibling,
    StorageFailure,
    Timeout,
    Unavailable,
)
from dynakv.client.protocol import parse_addresses
from dynakv.core.config import SYMBOLIC_QUORUMS, Quorum

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_BAD_REQUEST: Final = 4
EXIT_SERVER: Final = 5
EXIT_CONNECTION: Final = 6

EPILOG = """\
the cluster: --cluster DIR reads DIR/cluster.json (written by `dynakv dev`) and tries every node's
client address in turn; --host HOST:PORT names one node's client port.

quorums (--r, --pr, --w, --dw, --pw) are an integer or one, quorum, all; the bucket's default otherwise.
contexts are printed and taken in base64.

exit codes:
  0  done
  1  not found (get)
  2  usage: bad arguments, unreadable cluster.json
  3  unavailable or timeout: too few replicas answered (the message says which quorum, how many)
  4  bad request: the server refused the input (the message names the field)
  5  server failure: overloaded, or its storage failed
  6  connection: no node reachable, connection lost, protocol error
"""


# -- argument types --------------------------------------------------------------------------------


def _quorum(text: str) -> Quorum:
    if text in SYMBOLIC_QUORUMS:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or one of {SYMBOLIC_QUORUMS}") from None


def _context(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise argparse.ArgumentTypeError(f"{text!r} is not base64 (pass the context as printed)") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum 1")
    return value


def _meta(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


# -- parsers ----------------------------------------------------------------------------------------


def _common(commands: Any, name: str, help_text: str, run: Callable[..., int]) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bucket", metavar="BUCKET", help="bucket name (UTF-8)")
    parser.add_argument("key", metavar="KEY", help="key (UTF-8)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--cluster", type=Path, metavar="DIR", help="a `dynakv dev` directory")
    target.add_argument("--host", metavar="HOST:PORT", help="one node's client address")
    parser.add_argument("--timeout-ms", type=_positive, metavar="MS", help="the request's timeout")
    parser.set_defaults(run=functools.partial(_run, parser, run))
    return parser


def _write_quorums(parser: argparse.ArgumentParser) -> None:
    for name in ("w", "dw", "pw"):
        parser.add_argument(f"--{name}", type=_quorum, metavar=name.upper(), help=f"{name} quorum")
    parser.add_argument("--context", type=_context, metavar="C", help="the context of your last read")


def register(commands: Any) -> None:
    get = _common(commands, "get", "read every sibling of a key and its context", _get)
    for name in ("r", "pr"):
        get.add_argument(f"--{name}", type=_quorum, metavar=name.upper(), help=f"{name} quorum")
    get.add_argument("--json", action="store_true", help="print one JSON object")

    put = _common(commands, "put", "store a value (VALUE, or - to read the bytes from stdin)", _put)
    put.add_argument("value", metavar="VALUE|-")
    _write_quorums(put)
    put.add_argument("--content-type", default="application/octet-stream", metavar="T")
    put.add_argument("--charset", metavar="CS")
    put.add_argument(
        "--meta", type=_meta, action="append", default=[], metavar="NAME=VALUE", help="user metadata"
    )
    put.add_argument("--return-body", action="store_true", help="print the stored siblings too")
    put.add_argument("--json", action="store_true", help="print one JSON object")

    delete = _common(
        commands, "delete", "delete a key (without --context: what the coordinator holds)", _delete
    )
    _write_quorums(delete)


# -- running --------------------------------------------------------------------------------------


def _addresses(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    if args.host is not None:
        return [args.host]
    path = args.cluster / "cluster.json"
    try:
        nodes = json.loads(path.read_text())["nodes"]
        addresses = [str(node["client"]) for node in nodes if node.get("client")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        parser.error(f"cannot read {path}: {err}")
    if not addresses:
        parser.error(f"{path} lists no node with a client address")
    return addresses


def _run(
    parser: argparse.ArgumentParser,
    action: Callable[[Client, argparse.Namespace], int],
    args: argparse.Namespace,
) -> int:
    try:
        addresses = parse_addresses(_addresses(parser, args))
    except ValueError as err:
        parser.error(f"argument --host/--cluster: {err}")
    try:
        with Client(addresses) as client:
            return action(client, args)
    except DynakvClientError as err:
        kind, code = describe_error(err)
        sys.stderr.write(f"{kind}: {err_text(err)}\n")
        return code


def describe_error(err: DynakvClientError) -> tuple[str, int]:
    """The error's name on the command line and its exit code."""
    if isinstance(err, Unavailable):
        return "unavailable", EXIT_UNAVAILABLE
    if isinstance(err, Timeout):
        return "timeout", EXIT_UNAVAILABLE
    if isinstance(err, BadRequest):
        return "bad request", EXIT_BAD_REQUEST
    if isinstance(err, Overloaded):
        return "overloaded", EXIT_SERVER
    if isinstance(err, StorageFailure):
        return "storage failure", EXIT_SERVER
    if isinstance(err, ConnectionFailed | ConnectionLost | ProtocolError):
        return "connection", EXIT_CONNECTION
    return "error", EXIT_SERVER


def err_text(err: DynakvClientError) -> str:
    """Quorum failures in one fixed shape ("w=2 needed 2, 1 acknowledged"); others as the server said."""
    if isinstance(err, Unavailable | Timeout) and err.quorum_field and err.needed is not None:
        return f"{err.quorum_field}={err.needed} needed {err.needed}, {err.acknowledged} acknowledged"
    return str(err)


def _get(client: Client, args: argparse.Namespace) -> int:
    result = client.get(args.bucket, args.key, r=args.r, pr=args.pr, timeout_ms=args.timeout_ms)
    if args.json:
        report = {"found": result.found, "siblings": [sibling_json(s) for s in result.siblings]}
        _write_json({**report, "context": _b64(result.context)})
    else:
        sys.stdout.write(format_siblings(result.siblings))
        if result.context:  # after a delete there is no value but still a context to write with
            sys.stdout.write(f"context: {_b64(result.context)}\n")
    if not result.found:
        sys.stderr.write("not found\n")
        return EXIT_NOT_FOUND
    return EXIT_OK


def _put(client: Client, args: argparse.Namespace) -> int:
    value = sys.stdin.buffer.read() if args.value == "-" else os.fsencode(args.value)
    result = client.put(
        args.bucket,
        args.key,
        value,
        context=args.context,
        content_type=args.content_type,
        charset=args.charset,
        usermeta=dict(args.meta),
        w=args.w,
        dw=args.dw,
        pw=args.pw,
        return_body=args.return_body,
        timeout_ms=args.timeout_ms,
    )
    if args.json:
        _write_json({"context": _b64(result.context), "siblings": [sibling_json(s) for s in result.siblings]})
    else:
        sys.stdout.write(format_siblings(result.siblings))
        sys.stdout.write(f"context: {_b64(result.context)}\n")
    return EXIT_OK


def _delete(client: Client, args: argparse.Namespace) -> int:
    client.delete(
        args.bucket,
        args.key,
        context=args.context,
        w=args.w,
        dw=args.dw,
        pw=args.pw,
        timeout_ms=args.timeout_ms,
    )
    return EXIT_OK


# -- output -------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _value_text(value: bytes) -> tuple[str, str]:
    """(text, encoding): the value itself when it is UTF-8, else its base64."""
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return _b64(value), "base64"


def _timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def sibling_json(sibling: Sibling) -> dict[str, Any]:
    text, encoding = _value_text(sibling.value)
    return {
        "value": text,
        "value_encoding": encoding,
        "content_type": sibling.content_type,
        "charset": sibling.charset,
        "content_encoding": sibling.content_encoding,
        "usermeta": sibling.usermeta,
        "links": [list(link) for link in sibling.links],
        "indexes": [list(index) for index in sibling.indexes],
        "last_modified_ms": sibling.last_modified_ms,
    }


def format_siblings(siblings: list[Sibling]) -> str:
    lines: list[str] = []
    for i, sibling in enumerate(siblings, 1):
        if len(siblings) > 1:
            lines.append(f"--- sibling {i} of {len(siblings)}")
        content_type = sibling.content_type
        if sibling.charset:
            content_type += f"; charset={sibling.charset}"
        lines.append(f"content-type: {content_type}")
        if sibling.content_encoding:
            lines.append(f"content-encoding: {sibling.content_encoding}")
        lines.append(f"last-modified: {_timestamp(sibling.last_modified_ms)}")
        lines.extend(f"meta: {name}={value}" for name, value in sibling.usermeta.items())
        text, encoding = _value_text(sibling.value)
        lines.append(f"value: {text}" if encoding == "utf-8" else f"value (base64): {text}")
    return "".join(line + "\n" for line in lines)


def _write_json(report: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
