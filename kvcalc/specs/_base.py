from typing import Annotated, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _takes_bool(annotation) -> bool:
    """Whether a field's type admits a boolean anywhere (bool, bool | None, Literal[True], ...)."""
    return annotation is bool or isinstance(annotation, bool) or any(_takes_bool(a) for a in get_args(annotation))


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown fields (a typo in a spec file fails naming the field) and
    non-finite numbers (inf and nan are never a size, a bandwidth or a peak)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data):
        """pydantic's lax mode reads `memory_GiB = true` as 1; a spec file's true/false is never a number."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if isinstance(value, bool) and field is not None and not _takes_bool(field.annotation):
                    raise ValueError(f"{name}: expected a number or text, got the boolean {str(value).lower()}")
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
