"""Form fields and validators with German input conventions and messages."""

from __future__ import annotations

from datetime import date
from typing import Any

from wtforms import Field, Form
from wtforms.fields import DecimalField, SelectField
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


def quarter_label(key: int | None) -> str:
    """``20253`` → ``Q3/2025``; none → empty."""
    return "" if key is None else f"Q{key % 10}/{key // 10}"


class QuarterField(SelectField):
    """A quarter picked from a list (``Q3/2025``), stored as its key 20253; blank = none.

    Offers the quarters from 2020 to five years ahead, and the field's own value
    wherever it lies, so that an older value survives an edit unchanged.
    """

    def __init__(self, *args: Any, blank_text: str = "– unbefristet –", **kwargs: Any) -> None:
        kwargs.pop("allow_blank", None)  # Flask-Admin passes it for nullable columns
        kwargs["coerce"] = lambda v: int(v) if v not in (None, "", "None") else None
        super().__init__(*args, **kwargs)
        self.blank_text = blank_text

    def iter_choices(self) -> Any:
        this_year = date.today().year
        keys = [y * 10 + q for y in range(2020, this_year + 6) for q in (1, 2, 3, 4)]
        if self.data is not None and self.data not in keys:
            keys = sorted([*keys, self.data])
        self.choices = [("", self.blank_text)] + [(str(k), quarter_label(k)) for k in keys]
        return super().iter_choices()

    def pre_validate(self, form: Form) -> None:
        # Any quarter a reporting period could have (see models.indicator's CHECK).
        if self.data is not None and not (20001 <= self.data <= 21004 and 1 <= self.data % 10 <= 4):
            raise ValidationError("Bitte ein Quartal aus der Liste wählen.")
