"""The phone's side of the hub: the async API client, owner and requester profiles, live viewing."""

__all__: list[str] = []
