"""Errors that say what to do, importable without the libraries that raise them (the CLI maps
them to one `error:` line)."""


class BundleError(ValueError):
    """A folder that is not a model bundle of this format; says what to do."""


class ChampionError(RuntimeError):
    """No usable champion pair (none promoted, or two that disagree); says what to do."""
