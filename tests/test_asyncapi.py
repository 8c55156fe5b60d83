"""docs/asyncapi.yaml: generated from the code's message table and schemas, valid AsyncAPI 3.0."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from intentcam.asyncapi import SCHEMA_DIR, document
from intentcam.control.commands import COMMANDS
from intentcam.telemetry.messages import DELIVERY, MESSAGE_TYPES, Topics

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def asyncapi_validator() -> Draft7Validator:
    found = sorted(ROOT.glob(".cache/asyncapi-specs-*/package/schemas/3.0.0.json"))
    assert found, "the AsyncAPI 3.0.0 JSON Schema is missing: run `make setup` (asyncapi-spec)"
    return Draft7Validator(json.loads(found[-1].read_text(encoding="utf-8")))


def test_the_document_is_what_the_code_generates() -> None:
    written = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert written == document(), "docs/asyncapi.yaml is stale: run `make asyncapi`"


def test_the_document_is_valid_asyncapi_3(asyncapi_validator: Draft7Validator) -> None:
    written = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert [e.message for e in asyncapi_validator.iter_errors(written)] == []
    broken = copy.deepcopy(written)  # the check can fail: an AsyncAPI 2 verb is refused
    broken["operations"]["publish_counts"]["action"] = "publish"
    assert list(asyncapi_validator.iter_errors(broken))


def test_every_message_and_topic_of_the_code_is_described() -> None:
    written = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    topics = Topics("{root}", "{site}", "{device}")
    addresses = {channel["address"] for channel in written["channels"].values()}
    for kind in MESSAGE_TYPES:
        message = written["components"]["messages"][kind]
        schema_file = (DOC.parent / message["payload"]["$ref"]).resolve()
        assert schema_file.parent == (DOC.parent / SCHEMA_DIR).resolve() and schema_file.exists()
        assert json.loads(schema_file.read_text())["properties"]["type"]["const"] == kind
        mqtt = written["operations"][f"publish_{kind}"]["bindings"]["mqtt"]
        assert (mqtt["qos"], mqtt["retain"]) == (DELIVERY[kind].qos, DELIVERY[kind].retained)
        if kind != "reply":
            assert topics.of(kind) in addresses
    command = written["channels"]["command"]
    assert command["parameters"]["command"]["enum"] == list(COMMANDS)
