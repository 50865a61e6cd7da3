"""Signed checkpoints: the C2SP tlog-checkpoint body in a C2SP signed note, with Ed25519 keys.

A checkpoint is the text::

    <origin>
    <tree size>
    <root hash, base64>
    time <RFC 3339 UTC>

    — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>

The signature covers the body (the lines before the blank line, each ending
in a newline). Keys use the signed-note key encodings: the verifier key
(FILE.pub) is ``<name>+<key id hex>+<base64(0x01 || public key)>`` and the
signer key (FILE) is ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ||
private key)>``, where the key id is the first 4 bytes of
``SHA-256(<name> || "\\n" || 0x01 || public key)``.

Signing and checking go through the ``cryptography`` package. Nothing here
touches a database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from flowledger._exceptions import KeyFileError, ProofError

__all__ = [
    "Checkpoint",
    "SignerKey",
    "VerifierKey",
    "generate_key",
    "open_checkpoint",
    "origin_problem",
    "read_unverified",
    "sign_checkpoint",
]

_ED25519: Final = b"\x01"
_SIGNATURE_PREFIX: Final = "\u2014 "
_PRIVATE_PREFIX: Final = "PRIVATE+KEY+"
_NAME: Final = re.compile(r"^[^\s+]+$")
_TIME_PREFIX: Final = "time "
_HASH_BYTES: Final = 32


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{what} is not base64: {exc}") from None


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A public key and its name: checks signatures."""

    name: str
    public: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read ``<name>+<id>+<base64>``; KeyFileError when it is not an Ed25519 verifier key."""
        parts = text.strip().split("+", 2)  # base64 key data may itself hold '+'
        if len(parts) != 3 or not _NAME.match(parts[0]):
            raise KeyFileError("this is not a verifier key (NAME+ID+KEY); pass the .pub file written by keygen")
        name, key_id, data = parts
        raw = _b64decode(data, "the verifier key")
        if raw[:1] != _ED25519 or len(raw) != 33:
            raise KeyFileError("the verifier key is not an Ed25519 key")
        if key_id.lower() != _key_id(name, raw[1:]).hex():
            raise KeyFileError("the verifier key's id does not match its name and key")
        return cls(name, raw[1:])

    def text(self) -> str:
        """The key as one line (what FILE.pub holds)."""
        data = base64.b64encode(_ED25519 + self.public).decode()
        return f"{self.name}+{_key_id(self.name, self.public).hex()}+{data}"

    @property
    def key_id(self) -> bytes:
        """The 4 bytes that name this key in a signature line."""
        return _key_id(self.name, self.public)

    def verifies(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class SignerKey:
    """A private key and its name: signs checkpoints."""

    name: str
    private: bytes

    @classmethod
    def parse(cls, text: str) -> SignerKey:
        """Read ``PRIVATE+KEY+<name>+<id>+<base64>``; KeyFileError otherwise."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise KeyFileError("this is not a signing key (PRIVATE+KEY+...); pass the file written by keygen")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3 or not _NAME.match(parts[0]):
            raise KeyFileError("the signing key is malformed")
        name, key_id, data = parts
        raw = _b64decode(data, "the signing key")
        if raw[:1] != _ED25519 or len(raw) != 33:
            raise KeyFileError("the signing key is not an Ed25519 key")
        key = cls(name, raw[1:])
        if key_id.lower() != key.verifier().key_id.hex():
            raise KeyFileError("the signing key's id does not match its key")
        return key

    def text(self) -> str:
        """The key as one line (what FILE holds)."""
        data = base64.b64encode(_ED25519 + self.private).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier().key_id.hex()}+{data}"

    def verifier(self) -> VerifierKey:
        """The matching public key."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = Ed25519PrivateKey.from_private_bytes(self.private).public_key()
        return VerifierKey(self.name, public.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.private).sign(message)


def generate_key(name: str) -> SignerKey:
    """A new Ed25519 signing key named ``name`` (no whitespace, no ``+``)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    if not _NAME.match(name):
        raise KeyFileError(f"key name {name!r} must have no whitespace and no '+'")
    private = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return SignerKey(name, private)


def origin_problem(origin: str) -> str | None:
    """Why ``origin`` cannot be a checkpoint's first line (C2SP tlog-checkpoint: one non-empty line), or None."""
    if not origin:
        return "the origin is empty; name the log in one line"
    bad = next((c for c in origin if not c.isprintable()), None)
    if bad is not None:
        return f"the origin holds {bad!r} at character {origin.index(bad) + 1}; it is one line of visible text"
    return None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint states: the log's origin, its size (entries), its root hash and when."""

    origin: str
    size: int
    root: bytes
    time: str

    def body(self) -> str:
        """The signed part of the note."""
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\n{_TIME_PREFIX}{self.time}\n"


def sign_checkpoint(checkpoint: Checkpoint, key: SignerKey) -> str:
    """The signed note text of ``checkpoint``."""
    body = checkpoint.body()
    signature = base64.b64encode(key.verifier().key_id + key.sign(body.encode())).decode()
    return f"{body}\n{_SIGNATURE_PREFIX}{key.name} {signature}\n"


def open_checkpoint(text: str, key: VerifierKey) -> Checkpoint:
    """Check a signed checkpoint with ``key`` and read it; ProofError saying what is wrong otherwise."""
    body, sep, signatures = text.partition("\n\n")
    if not sep:
        raise ProofError("the checkpoint is not a signed note (no blank line before the signatures)")
    body += "\n"
    signed = False
    for line in signatures.splitlines():
        if not line.startswith(_SIGNATURE_PREFIX):
            raise ProofError(f"the checkpoint has a malformed signature line: {line[:60]!r}")
        name, _, data = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if name != key.name:
            continue
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProofError("the checkpoint's signature is not base64") from None
        if raw[:4] == key.key_id and key.verifies(body.encode(), raw[4:]):
            signed = True
    if not signed:
        raise ProofError(f"the checkpoint is not signed by the key {key.name} (a wrong key, or the text was changed)")
    return _read_body(body)


def read_unverified(text: str) -> Checkpoint:
    """What a checkpoint states, without checking its signature (to make a proof that the auditor checks)."""
    body, sep, _ = text.partition("\n\n")
    if not sep:
        raise ProofError("the checkpoint is not a signed note (no blank line before the signatures)")
    return _read_body(body + "\n")


def _read_body(body: str) -> Checkpoint:
    lines = body.splitlines()
    if len(lines) < 3 or not lines[1].isdigit():
        raise ProofError("the checkpoint's body is not origin, tree size and root hash")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        raise ProofError("the checkpoint's root hash is not base64") from None
    if len(root) != _HASH_BYTES:
        raise ProofError("the checkpoint's root hash is not 32 bytes")
    time = next((line[len(_TIME_PREFIX) :] for line in lines[3:] if line.startswith(_TIME_PREFIX)), "")
    return Checkpoint(origin=lines[0], size=int(lines[1]), root=root, time=time)
