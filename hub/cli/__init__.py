"""The ``doorward`` command line: :func:`hub.cli.main.main`, one module per command group."""

__all__: list[str] = []
