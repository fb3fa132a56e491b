"""Command line: one module per subcommand, heavy imports inside the handlers so `--help` is instant."""


def comma_list(value: str | None) -> list[str]:
    """The items of a comma-separated option, stripped, empties dropped ([] for an absent option)."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else []
