"""One module per `anec` subcommand, each with `register(subparsers, common)`."""
