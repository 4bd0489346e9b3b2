import reprlib
import types
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _kinds(annotation) -> set:
    """The plain types a field's value may be (int, float, bool, str, NoneType; a container's own type otherwise):
    through Annotated, Optional and unions, a Literal's values' types."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Literal:
        return {type(a) for a in get_args(annotation)}
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    return {origin or annotation}


def _dict_values(annotation):
    """The value type of the dict[K, V] a field's type names (through Annotated and Optional), or None."""
    origin = get_origin(annotation)
    if origin is dict:
        args = get_args(annotation)
        return args[1] if len(args) == 2 else None
    for arg in get_args(annotation) if origin in (Annotated, Union, types.UnionType) else ():
        found = _dict_values(arg)
        if found is not None:
            return found
    return None


_SHORT = reprlib.Repr()  # a value in a one-line message: two levels, four entries a list (Python 3.11 takes no
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 40, 40  # arguments)


def _plain_value_error(name: str, value, kinds: set) -> str | None:
    """Why a spec file's value cannot be the field's plain type as written, or None: pydantic's lax mode reads
    "80", " 80 " and "8_0" as 80, 32.0 as 32 and "false" or 0 as False, guesses the config.json reader refuses (the
    sixth audit); true/false is never a number."""
    numeric = kinds & {int, float}
    if isinstance(value, bool):
        return None if bool in kinds else f"{name}: expected a number or text, got the boolean {str(value).lower()}"
    if isinstance(value, str) and numeric and str not in kinds:
        return f"{name}: expected a number, got the string {value!r}"
    if isinstance(value, float) and int in kinds and float not in kinds:
        return f"{name}: expected a whole number, got {value!r}"
    if kinds <= {bool, type(None)} and bool in kinds and value is not None:
        # reprlib: a few entries and levels of a list, whatever YAML aliases expand it to (the twenty-eighth audit, F3:
        # a 641-byte alias bomb's full repr had run out of memory)
        return f"{name}: expected true or false, got {_SHORT.repr(value)}"
    return None


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown fields (a typo in a spec file fails naming the field) and
    non-finite numbers (inf and nan are never a size, a bandwidth or a peak)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_values_as_written(cls, data):
        """Numbers are numbers, whole where the field is whole, and true/false is a switch (_plain_value_error); a
        table of numbers (peak_tflops) likewise for each entry."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is None:
                    continue
                kinds = _kinds(field.annotation)
                entries = value.items() if isinstance(value, dict) and dict in kinds else [(None, value)]
                if dict in kinds:
                    kinds = _kinds(_dict_values(field.annotation))
                for key, item in entries:
                    why = _plain_value_error(name if key is None else f"{name}.{key}", item, kinds)
                    if why:
                        raise ValueError(why)
        return data

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields_first(cls, data):
        """A typo'd key (memory_bandwith_GBps) is reported as itself, with the field it may mean, rather than as
        the required field it leaves missing (audit U6); an empty name is refused."""
        if isinstance(data, dict):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            unknown = [k for k in data if k not in known]
            if unknown:
                import difflib

                key = str(unknown[0])
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(f"{key}: unknown field{hint}")
            if "name" in cls.model_fields and isinstance(data.get("name"), str) and not data["name"].strip():
                raise ValueError("name: empty; expected the spec's name")
        return data


# Physical ranges: a value outside them is a broken spec, and would overflow or divide into inf downstream.
Count = Annotated[int, Field(ge=1, le=10**7)]  # layers, heads, widths, experts
Width = Annotated[int, Field(ge=1, le=10**8)]  # hidden, MLP and vocabulary widths
Tokens = Annotated[int, Field(ge=1, le=10**10)]  # context lengths and windows
