"""Form fields and validators with German input conventions and messages."""

from __future__ import annotations

from typing import Any

from wtforms import Field, Form
from wtforms.fields import DecimalField
from wtforms.validators import StopValidation, ValidationError
from wtforms.widgets import TextInput

from kim_admin.formatting import parse_decimal


class GermanDecimalField(DecimalField):
    """A decimal input that accepts ``0,75`` and ``1.234,5`` as well as ``0.75``.

    Rendered as a text input (with a numeric keyboard on phones): a browser's
    number input would drop a value written with a decimal comma.
    """

    widget = TextInput()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("render_kw", {}).setdefault("inputmode", "decimal")
        super().__init__(*args, **kwargs)

    def pre_validate(self, form: Form) -> None:
        if self.process_errors:
            raise StopValidation()  # the parse error says it all; skip range checks

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        try:
            self.data = parse_decimal(str(valuelist[0]))
        except ValueError as exc:
            self.data = None
            raise ValueError("Bitte eine Zahl eingeben, z. B. 0,75.") from exc

    def _value(self) -> str:
        if self.raw_data:
            return str(self.raw_data[0])
        if self.data is None:
            return ""
        return format(self.data.normalize(), "f").replace(".", ",")


class NotBefore:
    """The field's date must not lie before the date in ``other``."""

    def __init__(self, other: str, message: str | None = None) -> None:
        self.other = other
        self.message = message

    def __call__(self, form: Form, field: Field) -> None:
        start = form[self.other].data
        if field.data and start and field.data < start:
            label = form[self.other].label.text
            raise ValidationError(self.message or f"Das Datum darf nicht vor „{label}“ liegen.")


class NotLessThan:
    """The field's number must not be smaller than the number in ``other``."""

    def __init__(self, other: str) -> None:
        self.other = other

    def __call__(self, form: Form, field: Field) -> None:
        low = form[self.other].data
        if field.data is not None and low is not None and field.data < low:
            label = form[self.other].label.text
            raise ValidationError(f"Der Wert darf nicht kleiner sein als „{label}“.")
