"""The exception hierarchy: caught only at stage boundaries and in the CLI."""


class StreamdetError(Exception):
    """Base class of every error streamdet raises on purpose."""


class ConfigError(StreamdetError):
    """The configuration is invalid. ``problems`` lists one ``key.path: message`` per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class SourceError(StreamdetError):
    """A video source could not be opened or read (the capture stage retries these)."""


class ModelError(StreamdetError):
    """A model or checkpoint could not be built, loaded or run."""
