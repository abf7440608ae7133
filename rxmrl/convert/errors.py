"""The one error every converter raises (kept free of torch, so the CLI can import it cheaply)."""


class ConversionError(ValueError):
    """A reference configuration or checkpoint that cannot be converted; the message names the field."""
