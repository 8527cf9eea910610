"""The `phoenix` command: one entry point, subcommands loaded on demand."""
