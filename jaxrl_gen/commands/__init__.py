"""One module per `jaxrl-gen` subcommand, each with `main(config, workdir)`."""
