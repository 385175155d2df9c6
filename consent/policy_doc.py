"""Owner-signed policy documents: how a phone changes the device's policy.

The document is a ``crypto.signed`` signed document (canonical JSON body, Ed25519) serialised as
JSON text; its body holds the policy, the signing owner's key id, the device id and the time it was
issued. The device accepts it only from a current owner and only if it is newer than the policy in
force, so an old policy cannot be replayed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import jws
from consent._policy import Policy
from consent.errors import PolicyInvalid, TokenInvalid
from consent.models import PairedOwner
from crypto.errors import KeyFileError, SignatureError
from crypto.keys import key_id, load_ed25519_public
from crypto.signed import sign_document, verify_document

__all__ = ["MAX_POLICY_BYTES", "SignedPolicy", "sign_policy", "verify_policy"]

MAX_POLICY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class SignedPolicy:
    """A verified policy document."""

    policy: Policy
    owner_key_id: str
    device_id: str
    issued_at_s: int


def sign_policy(
    policy: Policy, owner_key: Ed25519PrivateKey, *, device_id: str, issued_at_s: int
) -> str:
    """The policy as a document signed by an owner, ready to send to the device."""
    body = {
        "type": "doorward-policy",
        "policy": policy.to_json(),
        "owner": key_id(owner_key.public_key()),
        "device": device_id,
        "iat": issued_at_s,
    }
    return json.dumps(sign_document(body, owner_key), sort_keys=True)


def verify_policy(
    document: str, owners: Iterable[PairedOwner], *, ignore_removed: bool = False
) -> SignedPolicy:
    """Verify a policy document against the paired owners; raise PolicyInvalid.

    ``ignore_removed`` keeps a policy in force after its signer was removed (the device's view);
    a new policy must come from a current owner.
    """
    if len(document) > MAX_POLICY_BYTES:
        raise PolicyInvalid(f"policy document is over {MAX_POLICY_BYTES} bytes")
    try:
        doc = jws.loads_strict(document.encode(), "policy document")
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
            raise PolicyInvalid("policy document must be a signed document")
        public = load_ed25519_public(doc["key"])
        kid = key_id(public)
        owner = next((o for o in owners if o.key_id == kid), None)
        if owner is None or (owner.removed and not ignore_removed):
            raise PolicyInvalid(f"policy is signed by {kid!r}, which is not a current owner")
        body = verify_document(doc, owner.signing_public)
        if set(body) != {"type", "policy", "owner", "device", "iat"} or body["type"] != (
            "doorward-policy"
        ):
            raise PolicyInvalid("policy document body must be a doorward-policy")
        if body["owner"] != kid:
            raise PolicyInvalid("policy document owner does not match its signing key")
        iat = body["iat"]
        if isinstance(iat, bool) or not isinstance(iat, int):
            raise PolicyInvalid("policy iat must be an integer")
        policy = Policy.from_json(body["policy"])
    except (TokenInvalid, SignatureError, KeyFileError, ValueError, TypeError) as exc:
        # TypeError: a signed policy listing objects where strings belong (unhashable).
        raise PolicyInvalid(f"policy document refused: {exc}") from exc
    return SignedPolicy(policy, kid, str(body["device"]), iat)
