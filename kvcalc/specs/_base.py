from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown fields, so a typo in a spec file fails naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
