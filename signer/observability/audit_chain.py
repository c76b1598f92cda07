"""The audit log's hash chain: the line format, the link hash, and ``verify`` for a log or a rotated
series of logs (``signer audit verify``).

Every line of an audit log is a JSON object that begins ``{"seq":N,"prev":"<64 hex>",``: ``seq``
counts lines from 0 over the whole chain (across restarts and rotated files), ``prev`` is the link
hash of the line before it: SHA-256 of that line's bytes (without its newline), or HMAC-SHA256 under
the key of ``audit.hmac_key``, so that someone who can write the log but does not hold the key
cannot rebuild the chain after changing it. The first line of a chain has ``seq`` 0 and ``prev``
``GENESIS`` (64 zeros).

Besides the decision lines (``signer.observability.audit``) the writer puts chain records in the
chain; each has a ``record`` field:

* ``start``: the first line of every file and the first line after each restart. ``hash`` names
  the link hash ("sha256" or "hmac-sha256", then ``key_id``: the first 8 bytes of
  HMAC(key, KEY_ID_LABEL), hex, so a wrong key is named as such), ``reason`` is "new" (a new chain),
  "restart" (continues the chain the file ends with) or "rotation" (``previous_file`` names the
  rotated file whose last line it links to). A start record's own ``prev`` is computed with the
  hash it names, and so is every link after it until the next start record.
* ``checkpoint``: written every ``audit.checkpoint_interval_s`` while lines are being written; its
  seq and link hash are the chain head, also logged ("audit chain head") and exported as metrics.
* ``dropped``: ``count`` lines were never written because the output did not keep up (the queue was
  full); they are gone, but not silently: the chain says how many, and where.
* ``lost``: ``count`` lines a failing write (disk full) lost. After a write that stopped mid-line,
  the next record carries ``"after_partial_line": true``: the fragment before it is not part of the
  chain, and the record links to the last whole line before the fragment.
* ``rotate``: the last line of a file that was rotated (renamed to ``file``).
* ``stop``: the last line the signer wrote before it stopped cleanly.

``verify`` orders the given files by their first ``seq`` (any order on the command line works) and
reports the FIRST problem, naming the file, the line number and the seq: a missing line (a gap in
``seq``, or a file missing from a series), a line that was changed (the next line's ``prev`` does not
match it), lines out of order, a file that does not begin with a start record (lines removed from
its start), an incomplete last line, a log that does not end with a stop record (its tail was cut;
``live`` when the signer is still writing it), a wrong or missing HMAC key, and a keyed chain that
turns unkeyed. A log written without a key proves nothing against someone who can rewrite all of it:
compare its head with one recorded elsewhere (``head``: the "audit chain head" log line, the metric),
or use a key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from signer.errors import ConfigError

GENESIS: Final = "0" * 64
SHA256: Final = "sha256"
HMAC_SHA256: Final = "hmac-sha256"
KEY_ID_LABEL: Final = b"validator-signer/audit/key-id"
MIN_KEY_BYTES: Final = 32
MAX_LINE_BYTES: Final = 1024 * 1024
"""An audit line is a few hundred bytes; a longer "line" is not one of ours."""
HEAD_METRIC_HEX_DIGITS: Final = 13
"""The metric signer_audit_chain_head_hash holds the first 13 hex digits (52 bits) of the head hash as
an integer: exact in a float64."""

START, CHECKPOINT, DROPPED, LOST, ROTATE, STOP = "start", "checkpoint", "dropped", "lost", "rotate", "stop"
RECORDS: Final = (START, CHECKPOINT, DROPPED, LOST, ROTATE, STOP)


@dataclass(frozen=True, slots=True)
class ChainKey:
    """How links are hashed: SHA-256 (``secret`` None) or HMAC-SHA256 under ``secret``."""

    secret: bytes | None = field(default=None, repr=False)
    template: Any = field(default=None, init=False, repr=False, compare=False)
    """An empty SHA-256, or an HMAC keyed once: a link is ``template.copy()``, updated with the line,
    its ``hexdigest()`` (the audit writer does this inline; cheaper than keying an HMAC per line)."""

    def __post_init__(self) -> None:
        template = hashlib.sha256() if self.secret is None else hmac.new(self.secret, digestmod=hashlib.sha256)
        object.__setattr__(self, "template", template)

    @classmethod
    def from_text(cls, text: str, where: str = "audit.hmac_key") -> ChainKey:
        """The key of a key file's first line (e.g. ``openssl rand -hex 32``): at least 32 bytes."""
        secret = text.strip().encode("utf-8")
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{where}: an audit HMAC key must be at least {MIN_KEY_BYTES} characters "
                f"(got {len(secret)}); make one with: openssl rand -hex 32"
            )
        return cls(secret)

    @property
    def algorithm(self) -> str:
        return SHA256 if self.secret is None else HMAC_SHA256

    @property
    def key_id(self) -> str | None:
        """Names the key without revealing it: the first 8 bytes of HMAC(key, KEY_ID_LABEL), hex."""
        if self.secret is None:
            return None
        return hmac.new(self.secret, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def link(self, line: bytes) -> str:
        """The link hash of ``line`` (its bytes without the newline), hex."""
        link = self.template.copy()
        link.update(line)
        return str(link.hexdigest())

    def describe(self) -> dict[str, str]:
        """The ``hash`` (and ``key_id``) fields of a start record."""
        described = {"hash": self.algorithm}
        if self.secret is not None:
            described["key_id"] = str(self.key_id)
        return described


def chained(seq: int, prev: str, body: str) -> str:
    """The chain line (no newline) for ``body``, a compact JSON object with at least one field:
    seq and prev come first. (The audit writer's hot path builds the same line inline.)"""
    return f'{{"seq":{seq},"prev":"{prev}",' + body[1:]


def record_body(kind: str, ts: str, **fields: Any) -> str:
    """The JSON body of a chain record of ``kind`` (one of RECORDS)."""
    return json.dumps({"ts": ts, "record": kind, **fields}, ensure_ascii=True, separators=(",", ":"))


def head_metric_value(head: str) -> int:
    """The value of signer_audit_chain_head_hash for a head hash (its first 52 bits)."""
    return int(head[:HEAD_METRIC_HEX_DIGITS], 16)


def parse_chain_line(raw: bytes) -> dict[str, Any] | None:
    """The object of a chain line, or None when ``raw`` is not one (not JSON, no int seq >= 0, no
    64-hex prev)."""
    if not raw.startswith(b'{"seq":'):
        return None
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    seq, prev = record.get("seq"), record.get("prev")
    if type(seq) is not int or seq < 0 or not isinstance(prev, str) or len(prev) != 64:
        return None
    if any(c not in "0123456789abcdef" for c in prev):
        return None
    return record


# --- verification --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """A place in the log and what is wrong (or worth knowing) there."""

    file: str
    line: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" + (f" (seq {self.seq})" if self.seq is not None else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found. ``problem`` is the first broken or missing line (None: intact)."""

    problem: Finding | None
    notes: tuple[Finding, ...]
    files: tuple[str, ...]
    """In chain order."""
    lines: int
    decisions: int
    """Decision lines (the rest are chain records)."""
    first_seq: int | None
    last_seq: int | None
    head: str | None
    """The link hash of the last line (under the key in force there)."""
    dropped: int
    lost: int

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(slots=True)
class _Line:
    file: str
    number: int
    raw: bytes
    complete: bool
    """Ended with a newline."""


def _read_lines(path: Path) -> Iterator[_Line]:
    """The lines of ``path``; one longer than MAX_LINE_BYTES comes cut to that length (it is not a
    chain line either way), so a hostile file cannot make verify read a line into memory whole."""
    try:
        with path.open("rb") as fh:
            number = 0
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                number += 1
                complete = raw.endswith(b"\n")
                if not complete and len(raw) > MAX_LINE_BYTES:
                    while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    complete = bool(rest)
                    raw = raw[:MAX_LINE_BYTES] + b"\n"
                yield _Line(str(path), number, raw[:-1] if raw.endswith(b"\n") else raw, complete)
    except OSError as exc:
        raise ConfigError(f"cannot read audit log {path}: {exc.strerror}") from exc


def _first_seq(path: Path) -> int | None:
    for line in _read_lines(path):
        record = parse_chain_line(line.raw)
        if record is not None:
            return int(record["seq"])
    return None


class _Broken(Exception):
    def __init__(self, finding: Finding, missing_seq: int | None = None) -> None:
        super().__init__(str(finding))
        self.finding = finding
        self.missing_seq = missing_seq
        """For a gap: the seq that was expected here (verify looks for it further on: moved?)."""


@dataclass(slots=True)
class _Walk:
    """The state of one pass over the chain."""

    keys: dict[str, ChainKey]
    key_given: bool
    live: bool
    head: tuple[int, str] | None
    notes: list[Finding] = field(default_factory=list)
    key: ChainKey | None = None
    keyed: bool = False
    prev_line: _Line | None = None
    prev_seq: int | None = None
    prev_record: str | None = None
    fragment: _Line | None = None
    first_plain_start: Finding | None = None
    first_seq: int | None = None
    lines: int = 0
    decisions: int = 0
    dropped: int = 0
    lost: int = 0
    head_found: bool = False

    def start_key(self, line: _Line, seq: int, record: dict[str, Any]) -> ChainKey:
        algorithm = record.get("hash")
        if algorithm == SHA256:
            # Plain links before the first keyed start are covered by it (its prev is keyed); after
            # it, a plain start would let whoever writes the log rebuild the rest.
            if self.keyed:
                raise _Broken(Finding(line.file, line.number, seq, "the chain turns from hmac-sha256 to sha256 here"))
            if self.first_plain_start is None:
                self.first_plain_start = Finding(line.file, line.number, seq, "")
            return ChainKey()
        if algorithm == HMAC_SHA256:
            key_id = record.get("key_id")
            key = self.keys.get(str(key_id))
            if key is None:
                given = ", ".join(sorted(self.keys)) or "none"
                raise _Broken(
                    Finding(
                        line.file,
                        line.number,
                        seq,
                        f"the chain is keyed with the HMAC key of id {key_id}; the key given is not that "
                        f"key (ids given: {given}): wrong or missing --hmac-key-file",
                    )
                )
            self.keyed = True
            return key
        raise _Broken(Finding(line.file, line.number, seq, f"start record with an unknown hash {algorithm!r}"))

    def take(self, line: _Line, first_of_file: bool) -> None:  # noqa: C901 -- one line of the chain checked against every way it can break
        record = parse_chain_line(line.raw)
        if record is None:
            if self.fragment is not None:
                raise _Broken(Finding(self.fragment.file, self.fragment.number, None, "not a line of the chain"))
            self.fragment = line
            return
        seq = int(record["seq"])
        kind = record.get("record")
        if self.fragment is not None:
            if record.get("after_partial_line") is not True:
                raise _Broken(
                    Finding(
                        self.fragment.file, self.fragment.number, None, "not a line of the chain (changed or added)"
                    )
                )
            self.notes.append(
                Finding(self.fragment.file, self.fragment.number, None, "an incomplete line (an interrupted write)")
            )
        if first_of_file and kind != START:
            raise _Broken(
                Finding(
                    line.file,
                    line.number,
                    seq,
                    "the file does not begin with a start record: the lines before this one were removed",
                )
            )
        key = self.start_key(line, seq, record) if kind == START else self.key
        if self.prev_line is None or self.prev_seq is None:
            self.first_seq = seq
            if seq == 0:
                if record["prev"] != GENESIS:
                    raise _Broken(Finding(line.file, line.number, seq, "seq 0 does not link to the genesis hash"))
            else:
                self.notes.append(
                    Finding(
                        line.file, line.number, seq, f"the chain is checked from seq {seq} (earlier files not given)"
                    )
                )
        else:
            expected = self.prev_seq + 1
            if seq > expected:
                missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
                boundary = " (a file of the series, or lines at its end, are missing)" if first_of_file else ""
                raise _Broken(
                    Finding(line.file, line.number, seq, f"{missing} missing before this line{boundary}: deleted"),
                    missing_seq=expected,
                )
            if seq < expected:
                raise _Broken(
                    Finding(
                        line.file, line.number, seq, f"seq {seq} after seq {self.prev_seq}: lines reordered or repeated"
                    )
                )
            assert key is not None
            if record["prev"] != key.link(self.prev_line.raw):
                prev = self.prev_line
                raise _Broken(
                    Finding(
                        prev.file,
                        prev.number,
                        self.prev_seq,
                        f"changed: the next line ({line.file} line {line.number}, seq {seq}) was written after a "
                        "different line here (or its own prev was changed)",
                    )
                )
            if kind == START and record.get("reason") == "restart" and self.prev_record not in (STOP, ROTATE):
                self.notes.append(
                    Finding(line.file, line.number, seq, "the signer restarted without a stop record: it had crashed")
                )
        if kind in (DROPPED, LOST):
            count = record.get("count")
            count = count if type(count) is int and count >= 0 else 0
            if kind == DROPPED:
                self.dropped += count
            else:
                self.lost += count
            why = "the output did not keep up" if kind == DROPPED else "a write failed"
            self.notes.append(Finding(line.file, line.number, seq, f"{count} lines not written ({why})"))
        self.key = key
        self.prev_line, self.prev_seq, self.prev_record = line, seq, kind
        self.fragment = None
        self.lines += 1
        self.decisions += kind is None
        if self.head is not None and seq == self.head[0]:
            assert key is not None
            if not key.link(line.raw).startswith(self.head[1]):
                raise _Broken(
                    Finding(line.file, line.number, seq, "does not hash to the given head: changed, or another chain")
                )
            self.head_found = True

    def finish(self, last_file: str) -> None:
        if self.fragment is not None:
            fragment = self.fragment
            message = (
                "incomplete last line: the file was truncated"
                if not fragment.complete
                else "not a line of the chain (changed or added)"
            )
            if not (self.live and not fragment.complete):
                raise _Broken(Finding(fragment.file, fragment.number, None, message))
        if self.prev_line is None:
            raise _Broken(Finding(last_file, 0, None, "no line of an audit chain in the given files"))
        if self.key_given and not self.keyed and self.first_plain_start is not None:
            start = self.first_plain_start
            raise _Broken(
                Finding(
                    start.file,
                    start.line,
                    start.seq,
                    "the log is hashed with plain sha256, not with the HMAC key given: anyone who can "
                    "write the log could have rebuilt it",
                )
            )
        if not self.live and self.prev_record != STOP:
            prev = self.prev_line
            raise _Broken(
                Finding(
                    prev.file,
                    prev.number,
                    self.prev_seq,
                    "the log ends here without a stop record: lines after this one were removed (or the "
                    "signer crashed, or is still writing: --live)",
                )
            )
        if self.head is not None and not self.head_found:
            end = self.prev_line
            raise _Broken(
                Finding(end.file, end.number, self.prev_seq, f"the given head (seq {self.head[0]}) is not in the log")
            )


def _find_seq(paths: Sequence[Path], seq: int) -> _Line | None:
    """The first line whose seq is ``seq``, if any (to tell a moved line from a deleted one)."""
    for path in paths:
        for line in _read_lines(path):
            record = parse_chain_line(line.raw)
            if record is not None and record["seq"] == seq:
                return line
    return None


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (HASH: the hex link hash, or at least its first 13 digits) for ``--head``."""
    seq_text, sep, digest = text.partition(":")
    digest = digest.strip().lower()
    if (
        not sep
        or not seq_text.strip().isdigit()
        or not HEAD_METRIC_HEX_DIGITS <= len(digest) <= 64
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise ConfigError(f"--head must be SEQ:HASH (the hash in hex, at least {HEAD_METRIC_HEX_DIGITS} digits)")
    return int(seq_text), digest


def verify(  # noqa: C901 -- orders the files, walks the chain, explains a break
    paths: Sequence[Path],
    keys: Sequence[ChainKey] = (),
    *,
    live: bool = False,
    head: tuple[int, str] | None = None,
) -> Verification:
    """Check the chain of the audit logs ``paths`` (one file, or a rotated series in any order)."""
    if not paths:
        raise ConfigError("no audit log given")
    ordered: list[tuple[int, Path]] = []
    for path in paths:
        first = _first_seq(path)
        if first is None:
            finding = Finding(str(path), 1, None, "no line of an audit chain in this file")
            return Verification(finding, (), tuple(str(p) for p in paths), 0, 0, None, None, None, 0, 0)
        ordered.append((first, path))
    ordered.sort(key=lambda item: item[0])
    for (seq_a, path_a), (seq_b, path_b) in itertools.pairwise(ordered):
        if seq_a == seq_b:
            finding = Finding(str(path_b), 1, seq_b, f"begins at the same seq as {path_a}: not one chain")
            return Verification(finding, (), tuple(str(p) for _, p in ordered), 0, 0, None, None, None, 0, 0)
    walk = _Walk(
        keys={str(k.key_id): k for k in keys if k.secret is not None},
        key_given=any(k.secret is not None for k in keys),
        live=live,
        head=head,
    )
    problem: Finding | None = None
    try:
        for _, path in ordered:
            first_of_file = True
            for line in _read_lines(path):
                walk.take(line, first_of_file)
                if walk.fragment is None:
                    first_of_file = False
        walk.finish(str(ordered[-1][1]))
    except _Broken as broken:
        problem = broken.finding
        if broken.missing_seq is not None:
            moved = _find_seq([p for _, p in ordered], broken.missing_seq)
            if moved is not None:
                problem = Finding(
                    problem.file,
                    problem.line,
                    problem.seq,
                    f"seq {broken.missing_seq} expected here, found at {moved.file} line {moved.number}: "
                    "lines reordered",
                )
    head_hash = walk.key.link(walk.prev_line.raw) if walk.key is not None and walk.prev_line is not None else None
    return Verification(
        problem=problem,
        notes=tuple(walk.notes),
        files=tuple(str(p) for _, p in ordered),
        lines=walk.lines,
        decisions=walk.decisions,
        first_seq=walk.first_seq,
        last_seq=walk.prev_seq,
        head=head_hash,
        dropped=walk.dropped,
        lost=walk.lost,
    )
