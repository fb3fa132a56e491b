"""Command line: one module per subcommand, heavy imports inside the handlers so `--help` is instant."""
