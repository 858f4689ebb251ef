"""Request validation errors name the customer and the field, however many there are."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from crm_ltv.serving.schemas import ScoreRequest


def _errors(body: object) -> list[tuple[tuple, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(raw)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def test_every_error_inside_a_customer_names_it():
    errors = _errors(
        {
            "customers": [
                {"customer_id": "ok", "as_of": "2025-01-01", "transactions": []},
                {
                    "customer_id": "c1",
                    "as_of": "2025-01-01",
                    "transactions": [
                        {"timestamp": "2024-06-01", "amount": "forty"},
                        {"amount": 1.0},
                    ],
                },
                {"customer_id": "c2"},
                5,
                {"as_of": "2025-01-01", "transactions": []},
                {"customer_id": "c3", "as_of": "2025-01-01", "transactions": [],
                 "contacts": [{"action": "thank_you", "sent_at": "2025-02-01"}]},
            ]
        }
    )  # fmt: skip
    assert errors == [
        (
            ("customers", 1),
            "customer 'c1': transactions.0.amount: "
            "Input should be a valid number, unable to parse string as a number",
        ),
        (("customers", 1), "customer 'c1': transactions.1.timestamp: Field required"),
        (
            ("customers", 2),
            "customer 'c2': give exactly one of transactions (with as_of) or features",
        ),
        (("customers", 3), "customer (no customer_id): Input should be an object"),
        (("customers", 4), "customer (no customer_id): customer_id: Field required"),
        (("customers", 5), "customer 'c3': contacts.0.sent_at: 2025-02-01 is after as_of"),
    ]


def test_errors_outside_the_customers_are_left_as_they_are():
    assert _errors(b'{"customers": [')[0][1].startswith("Invalid JSON")
    assert _errors(b"[1, 2]") == [((), "Input should be an object")]
    assert _errors({"customers": 3}) == [(("customers",), "Input should be a valid array")]
    assert _errors({"customers": [], "x": 1}) == [(("x",), "Extra inputs are not permitted")]


def test_non_finite_amounts_are_named_too():
    body = b'{"customers": [{"customer_id": "c-nan", "as_of": "2025-06-30",' \
        b' "transactions": [{"timestamp": "2025-06-01", "amount": NaN}]}]}'  # fmt: skip
    [(loc, message)] = _errors(body)
    assert loc == ("customers", 0)
    assert message == "customer 'c-nan': transactions.0.amount: Input should be a finite number"
