"""The doorbell's side of the hub: the HTTPS API application and ``doorward serve``."""

__all__: list[str] = []
