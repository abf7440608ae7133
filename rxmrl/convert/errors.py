"""The one error every converter raises (kept free of torch, so the CLI can import it cheaply)."""


from rxmrl.runtime import InputError


class ConversionError(ValueError, InputError):
    """A reference configuration or checkpoint that cannot be converted; the message names the field (an
    :class:`~rxmrl.runtime.InputError`: the CLI prints one ``error:`` line)."""
