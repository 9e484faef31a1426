"""One module per `tokenbench` subcommand, each with add_arguments(parser) and main(args) -> exit code."""
