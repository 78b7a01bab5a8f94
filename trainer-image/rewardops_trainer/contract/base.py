"""The common pydantic base of the contract: camelCase on the wire, unknown fields rejected."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ContractModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)
