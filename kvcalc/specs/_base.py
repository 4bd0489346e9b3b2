from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown fields (a typo in a spec file fails naming the field) and
    non-finite numbers (inf and nan are never a size, a bandwidth or a peak)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Physical ranges: a value outside them is a broken spec, and would overflow or divide into inf downstream.
Count = Annotated[int, Field(ge=1, le=10**7)]  # layers, heads, widths, experts
Width = Annotated[int, Field(ge=1, le=10**8)]  # hidden, MLP and vocabulary widths
Tokens = Annotated[int, Field(ge=1, le=10**10)]  # context lengths and windows
