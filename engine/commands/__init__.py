"""One module per `ftui` subcommand; each exposes `register(subparsers)`."""
