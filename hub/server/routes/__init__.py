"""The API's routes, one module per audience: owner, requester, pairing, events."""

__all__: list[str] = []
