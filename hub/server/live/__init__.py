"""Live view, the device's side: the frame relay, shared encodes, WebRTC answers, the page's TLS."""

__all__: list[str] = []
