"""What the doorbell and the phone both speak: signatures, live links, error codes, events, discovery."""

__all__: list[str] = []
